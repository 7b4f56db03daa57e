"""Run policies: which queued events make which runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from herald import Asset, EventBatch
from herald.scheduler.policy import Pending, plan_runs

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def pending(*assets: str, age: float = 0.0) -> list[Pending]:
    return [Pending(i, 100 + i, name, NOW - timedelta(seconds=age)) for i, name in enumerate(assets)]


def ids(runs: list[list[Pending]]) -> list[list[int]]:
    return [[p.event_id for p in run] for run in runs]


def test_one_run_per_event_by_default() -> None:
    runs, wake = plan_runs(Asset("a"), None, pending("a", "a", "a"), NOW)
    assert ids(runs) == [[100], [101], [102]] and wake is None


def test_any_of_makes_one_run_per_event_of_either_asset() -> None:
    runs, _ = plan_runs(Asset("a") | Asset("b"), None, pending("a", "b", "a"), NOW)
    assert ids(runs) == [[100], [101], [102]]


def test_all_of_waits_then_takes_every_event_collected() -> None:
    cond = Asset("a") & Asset("b")
    runs, _ = plan_runs(cond, None, pending("a", "a"), NOW)
    assert runs == []
    runs, _ = plan_runs(cond, None, pending("a", "a", "b"), NOW)
    assert ids(runs) == [[100, 101, 102]]


def test_mixed_expression_runs_single_satisfiers_alone() -> None:
    cond = (Asset("a") & Asset("b")) | Asset("c")
    runs, _ = plan_runs(cond, None, pending("a", "c", "c"), NOW)
    assert ids(runs) == [[101], [102]]  # the "a" event keeps waiting for a "b"


def test_batches_fill_up_then_flush_after_max_wait() -> None:
    batch = EventBatch(max_events=3, max_wait=2.0)
    runs, wake = plan_runs(Asset("a"), batch, pending(*"aaaaaaa"), NOW)
    assert ids(runs) == [[100, 101, 102], [103, 104, 105]]
    assert wake == NOW + timedelta(seconds=2)
    runs, wake = plan_runs(Asset("a"), batch, pending("a", age=5), NOW)
    assert ids(runs) == [[100]] and wake is None


def test_nothing_pending_plans_nothing() -> None:
    assert plan_runs(Asset("a"), None, [], NOW) == ([], None)
