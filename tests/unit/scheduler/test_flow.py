"""Flow control rules, decided by real scheduler passes on SQLite and PostgreSQL with an executor that
only records: order per key, skip, cancel_running, priority, throttle, rate limit, debounce.

The clock of the passes is a test's own (`Harness.clock`), so holds that end with time are
checked by moving it, never by sleeping.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from herald import DAG, Asset, Debounce, EventBatch, task
from herald.executors.records import TaskRequest, TaskResult
from herald.loader import DagBag
from herald.scheduler import flow
from herald.scheduler.scheduler import Scheduler
from herald.store import events as store_events
from herald.store import flow as store_flow
from herald.store import held as store_held
from herald.store import tables
from herald.store.db import Database
from herald.store.migrate import upgrade
from herald.store.states import TryState
from herald.store.sync import sync_bag
from herald.store.types import utcnow
from tests.unit.scheduler.test_pass import _Executor

READINGS = Asset("readings")
CANCELS = Asset("cancels")
PARTS = Asset("parts")
_dedupe = itertools.count()


def _dag(dag_id: str, schedule: Any = None, **flow: Any) -> DAG:
    with DAG(dag_id, schedule=schedule if schedule is not None else [READINGS], **flow) as dag:

        @task
        def evaluate() -> None:
            return None

        evaluate()
    return dag


class Harness:
    """One DAG on a migrated database, its scheduler, and a clock the passes read."""

    def __init__(self, db: Database, dag: DAG, monkeypatch: pytest.MonkeyPatch) -> None:
        self.db = db
        self.dag = dag
        bag = DagBag(folder=Path("."), dags={dag.dag_id: dag})
        catalog = sync_bag(db.engine, bag)
        self.asset_ids = catalog.asset_ids
        self.consumers = catalog.consumers
        self.executor = _Executor()
        self.scheduler = Scheduler(db, self.executor, asyncio.Event())
        self.scheduler.update(bag.dags, catalog.asset_ids, catalog.consumers)
        self.clock: datetime = utcnow()
        monkeypatch.setattr("herald.scheduler.scheduler.utcnow", lambda: self.clock)
        #: requests handed to the executor and not finished yet, by the payload of their event
        self.running: dict[str, TaskRequest] = {}

    def emit(self, *payloads: dict[str, Any], asset: str = "readings") -> list[int]:
        """Events of `asset` with these payloads, as a watcher stores them (committed in order); their ids."""
        asset_id = self.asset_ids[asset]
        with self.db.engine.begin() as conn:
            rows = [
                {
                    "asset_id": asset_id,
                    "source": "watcher:1",
                    "dedupe_key": f"m{next(_dedupe)}",
                    "extra": {"payload": p},
                    "timestamp": self.clock,
                }
                for p in payloads
            ]
            return [e[0] for e in store_events.insert_events(conn, rows, self.consumers, self.clock)]

    def step(self, *results: TaskResult) -> list[str]:
        """One pass; returns the names (payload "n") of the runs whose tries it handed out."""
        outcome = self.scheduler._pass(list(results), [])
        if outcome.cancel:
            self.executor.cancel(outcome.cancel)
        names = []
        for request in outcome.requests:
            name = str(request.events[-1]["extra"]["payload"]["n"])
            self.running[name] = request
            names.append(name)
        return names

    def finish(self, *names: str) -> list[str]:
        """The tries of these runs succeed; returns what the next pass started."""
        done = [self.running.pop(n) for n in names]
        return self.step(*(TaskResult(r.ti_id, TryState.SUCCESS, try_number=r.try_number) for r in done))

    def runs(self) -> list[dict[str, Any]]:
        """Every run: its payload names, key, state, held_by, priority; in id order."""
        dr, dre, ae = tables.dag_run, tables.dag_run_event, tables.asset_event
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(dr).order_by(dr.c.id)).all()
            links = conn.execute(
                select(dre.c.run_pk, ae.c.extra).join(ae, ae.c.id == dre.c.event_id).order_by(ae.c.id)
            ).all()
        names: dict[int, list[str]] = {}
        for link in links:
            names.setdefault(int(link.run_pk), []).append(str(link.extra["payload"]["n"]))
        return [
            {
                "names": names.get(int(r.id), []),
                "run_id": r.run_id,
                "key": r.run_key,
                "state": r.state,
                "held_by": r.held_by,
                "priority": r.priority,
                "cancelled_by_event": r.cancelled_by_event,
            }
            for r in rows
        ]

    def cancelled(self) -> dict[str, int]:
        """The events a `cancel_on=` event consumed before a run took them: payload name -> the
        cancelling event's id."""
        ce, ae = tables.cancelled_event, tables.asset_event
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                select(ae.c.extra, ce.c.cancelled_by_event).join(ae, ae.c.id == ce.c.event_id).order_by(ce.c.id)
            ).all()
        return {str(r.extra["payload"]["n"]): int(r.cancelled_by_event) for r in rows}

    def queued(self) -> int:
        """Events still waiting in the DAG's queue."""
        with self.db.engine.connect() as conn:
            return len(conn.execute(select(tables.event_queue.c.id)).all())

    def state_of(self, name: str) -> tuple[str, str | None]:
        """(state, held_by) of the run holding the event named `name`."""
        (run,) = [r for r in self.runs() if name in r["names"]]
        return run["state"], run["held_by"]


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    found = Database(database_url)
    upgrade(found.engine)
    yield found
    found.close()


def test_runs_of_one_key_start_in_event_order_one_at_a_time_while_other_keys_run(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(db, _dag("iot", key="device", max_active_runs_per_key=1), monkeypatch)
    h.emit(
        {"device": "a", "n": "a1"},
        {"device": "b", "n": "b1"},
        {"device": "a", "n": "a2"},
        {"device": "a", "n": "a3"},
        {"device": "b", "n": "b2"},
    )
    assert sorted(h.step()) == ["a1", "b1"]
    # the runs waiting for their key say so
    assert h.state_of("a2") == ("queued", "key") and h.state_of("b2") == ("queued", "key")
    assert {r["key"] for r in h.runs()} == {"a", "b"}
    assert h.step() == []  # nothing more while both keys are busy
    assert h.finish("a1") == ["a2"]
    assert h.finish("b1") == ["b2"]
    assert h.finish("a2") == ["a3"]
    h.finish("a3")
    h.finish("b2")
    assert {r["state"] for r in h.runs()} == {"success"}


def test_max_active_runs_per_key_lets_that_many_of_one_key_overlap(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(db, _dag("two", key="device", max_active_runs_per_key=2), monkeypatch)
    h.emit(*({"device": "a", "n": f"a{i}"} for i in range(1, 5)))
    assert h.step() == ["a1", "a2"]
    assert h.finish("a2") == ["a3"]
    assert h.finish("a1") == ["a4"]


def test_the_dag_limit_still_holds_and_says_so(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(db, _dag("capped", key="device", max_active_runs_per_key=1, max_active_runs=1), monkeypatch)
    h.emit({"device": "a", "n": "a1"}, {"device": "b", "n": "b1"})
    assert h.step() == ["a1"]
    assert h.state_of("b1") == ("queued", "max_active_runs")
    assert h.finish("a1") == ["b1"]


def test_skip_makes_a_skipped_run_while_its_key_is_busy(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(db, _dag("singleton", key="device", on_new_event="skip"), monkeypatch)
    h.emit({"device": "a", "n": "a1"})
    assert h.step() == ["a1"]
    h.emit({"device": "a", "n": "a2"}, {"device": "b", "n": "b1"}, {"device": "a", "n": "a3"})
    assert h.step() == ["b1"]
    assert h.state_of("a2") == ("skipped", "key") and h.state_of("a3") == ("skipped", "key")
    h.finish("a1", "b1")
    # once the key is free, its next event runs
    h.emit({"device": "a", "n": "a4"})
    assert h.step() == ["a4"]
    with db.engine.connect() as conn:
        assert store_flow.held_counts(conn, "singleton") == {"key": 2}


def test_cancel_running_stops_the_running_run_of_the_key_and_starts_the_newest(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(db, _dag("latest", key="device", on_new_event="cancel_running"), monkeypatch)
    h.emit({"device": "a", "n": "a1"}, {"device": "b", "n": "b1"})
    assert sorted(h.step()) == ["a1", "b1"]
    first = h.running["a1"]
    h.emit({"device": "a", "n": "a2"})
    assert h.step() == ["a2"]
    a2 = next(r for r in h.runs() if r["names"] == ["a2"])
    assert h.state_of("a1") == ("cancelled", f"cancelled by run {a2['run_id']}")
    # its try was stopped through the executor, and ended skipped with the reason
    assert h.executor.cancelled == [first.ti_id]
    ti = tables.task_instance
    with db.engine.connect() as conn:
        state, error = conn.execute(select(ti.c.state, ti.c.error).where(ti.c.id == first.ti_id)).one()
    assert state == "skipped" and "cancelled by run" in error
    # the late result of the stopped try changes nothing
    late = h.step(TaskResult(first.ti_id, TryState.SUCCESS, try_number=first.try_number))
    assert late == [] and h.state_of("a1")[0] == "cancelled"
    # two new events at once: the newest wins, the one between never starts
    h.emit({"device": "a", "n": "a3"}, {"device": "a", "n": "a4"})
    assert h.step() == ["a4"]
    a4 = next(r for r in h.runs() if r["names"] == ["a4"])
    assert h.state_of("a3") == ("cancelled", f"cancelled by run {a4['run_id']}")
    assert h.state_of("a2") == ("cancelled", f"cancelled by run {a4['run_id']}")
    assert h.state_of("b1") == ("running", None)


def test_priority_starts_the_highest_queued_run_first(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(db, _dag("urgent", priority="p", max_active_runs=1), monkeypatch)
    h.emit({"p": 1, "n": "low"}, {"p": 9, "n": "high"}, {"p": 5, "n": "mid"}, {"n": "none"})
    assert h.step() == ["high"]
    assert h.finish("high") == ["mid"]
    assert h.finish("mid") == ["low"]
    assert h.finish("low") == ["none"]
    assert [r["priority"] for r in h.runs()] == [1, 9, 5, 0]


def test_priority_from_the_payload_orders_across_keys_within_their_limits(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    dag = _dag("tiers", key="customer", max_active_runs_per_key=1, max_active_runs=1, priority="tier")
    h = Harness(db, dag, monkeypatch)
    h.emit(
        {"customer": "c1", "tier": 1, "n": "c1-1"},
        {"customer": "c2", "tier": 3, "n": "c2-1"},
        {"customer": "c2", "tier": 3, "n": "c2-2"},
    )
    assert h.step() == ["c2-1"]
    assert h.finish("c2-1") == ["c2-2"]
    assert h.finish("c2-2") == ["c1-1"]


def test_throttle_holds_runs_beyond_the_period_and_starts_them_when_it_allows(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(db, _dag("throttled", key="device", throttle=(2, 60)), monkeypatch)
    h.emit(*({"device": "a", "n": f"a{i}"} for i in range(1, 5)), {"device": "b", "n": "b1"})
    assert sorted(h.step()) == ["a1", "a2", "b1"]
    assert h.state_of("a3") == ("queued", "throttle") and h.state_of("a4") == ("queued", "throttle")
    h.finish("a1", "a2")
    assert h.step() == []  # finished runs still count within the period
    outcome = h.scheduler._pass([], [])
    assert outcome.next_at is not None and outcome.next_at > h.clock  # woken when the period allows
    h.clock = outcome.next_at
    assert h.step() == ["a3", "a4"]


def test_rate_limit_skips_runs_beyond_it_and_counts_them(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(db, _dag("limited", key="device", rate_limit=(2, 60)), monkeypatch)
    h.emit(*({"device": "a", "n": f"a{i}"} for i in range(1, 5)))
    assert h.step() == ["a1", "a2"]
    assert [h.state_of(n) for n in ("a3", "a4")] == [("skipped", "rate_limit")] * 2
    with db.engine.connect() as conn:
        assert store_flow.held_counts(conn, "limited") == {"rate_limit": 2}
    h.clock += timedelta(seconds=61)
    h.emit({"device": "a", "n": "a5"})
    assert h.step() == ["a5"]


def test_debounce_makes_one_run_with_the_whole_burst_once_the_key_is_quiet(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(db, _dag("quiet", key="device", debounce=10), monkeypatch)
    h.emit({"device": "a", "n": "a1"}, {"device": "b", "n": "b1"})
    assert h.step() == []
    assert h.state_of("a1") == ("queued", "debounce")
    h.clock += timedelta(seconds=6)
    h.emit({"device": "a", "n": "a2"})
    assert h.step() == []
    h.clock += timedelta(seconds=5)  # b quiet for 11 s, a for 5 s
    assert h.step() == ["b1"]
    h.emit({"device": "a", "n": "a3"})
    assert h.step() == []
    h.clock += timedelta(seconds=11)
    assert h.step() == ["a3"]
    (a,) = [r for r in h.runs() if r["key"] == "a"]
    assert a["names"] == ["a1", "a2", "a3"]
    # the run's tries get every event of the burst, as an EventBatch run's do
    assert [e["extra"]["payload"]["n"] for e in h.running["a3"].events] == ["a1", "a2", "a3"]
    # a new event after the release opens a new burst
    h.emit({"device": "a", "n": "a4"})
    assert h.step() == []
    assert len(h.runs()) == 3


def test_debounce_keep_last_and_max_wait(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(db, _dag("last", key="device", debounce=Debounce(10, max_wait=25, keep="last")), monkeypatch)
    for i in range(1, 5):  # an event every 8 s never lets the key be quiet for 10 s
        h.emit({"device": "a", "n": f"a{i}"})
        assert h.step() == []
        h.clock += timedelta(seconds=8)
    # 32 s after the first event: max_wait (25 s) released it with only the last event
    assert h.step() == ["a4"]
    assert [r["names"] for r in h.runs()] == [["a4"]]


def test_a_missing_key_is_a_key_of_its_own_and_a_dag_without_key_is_one_key(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(db, _dag("nokey", max_active_runs_per_key=1), monkeypatch)
    h.emit({"n": "x1"}, {"n": "x2"})
    assert h.step() == ["x1"]
    assert h.finish("x1") == ["x2"]
    assert {r["key"] for r in h.runs()} == {""}


def test_a_dag_held_by_another_scheduler_is_left_to_it(
    database_url: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("one SQLite writer at a time: there is no second scheduler to wait for")
    h = Harness(db, _dag("shared", key="device", max_active_runs_per_key=1), monkeypatch)
    h.emit({"device": "a", "n": "a1"})
    with db.engine.connect() as other:
        other.begin()
        assert store_flow.lock_dags(other, ["shared"]) == ({"shared"}, set())
        outcome = h.scheduler._pass([], [])
        # no run made or started behind the other scheduler's back; look again soon
        assert outcome.requests == [] and h.runs() == []
        assert outcome.next_at is not None and outcome.next_at - h.clock < timedelta(seconds=1)
        other.rollback()
    assert h.step() == ["a1"]


def test_cancel_on_cancels_the_queued_and_running_runs_of_its_key_made_before_it(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(db, _dag("orders", key="device", max_active_runs_per_key=1, cancel_on=CANCELS), monkeypatch)
    h.emit({"device": "a", "n": "a1"}, {"device": "a", "n": "a2"}, {"device": "b", "n": "b1"})
    assert sorted(h.step()) == ["a1", "b1"]
    first = h.running["a1"]
    (cancel,) = h.emit({"device": "a", "n": "stop"}, asset="cancels")
    assert h.step() == []
    why = f"cancelled by event {cancel}"
    # the running run and the one queued behind it end cancelled, saying by which event; b runs on
    assert h.state_of("a1") == ("cancelled", why) and h.state_of("a2") == ("cancelled", why)
    assert {r["cancelled_by_event"] for r in h.runs() if r["key"] == "a"} == {cancel}
    assert h.state_of("b1") == ("running", None)
    # the running run's try was stopped through the executor and ended skipped with the reason
    assert h.executor.cancelled == [first.ti_id]
    ti = tables.task_instance
    with db.engine.connect() as conn:
        state, error = conn.execute(select(ti.c.state, ti.c.error).where(ti.c.id == first.ti_id)).one()
        # the cancelling event left the queue: it cancels once
        assert conn.execute(select(tables.event_queue.c.id)).all() == []
    assert state == "skipped" and why in error
    # a cancel reaches only the runs of events before it: the key's next event runs
    h.emit({"device": "a", "n": "a3"})
    assert h.step() == ["a3"]
    # in one pass: an event before the cancel is cancelled, one after it runs
    h.finish("a3")
    h.emit({"device": "a", "n": "a4"})
    (second,) = h.emit({"device": "a", "n": "stop2"}, asset="cancels")
    h.emit({"device": "a", "n": "a5"})
    assert h.step() == ["a5"]
    # a4 was still queued: it leaves the queue cancelled, and no run is made from it
    assert h.cancelled() == {"a4": second}
    assert [r for r in h.runs() if "a4" in r["names"]] == []


def test_cancel_on_cancels_the_events_of_its_key_a_batch_is_still_gathering(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    dag = _dag("batched", key="device", batch=EventBatch(max_events=3, max_wait=60), cancel_on=CANCELS)
    h = Harness(db, dag, monkeypatch)
    h.emit({"device": "a", "n": "a1"}, {"device": "a", "n": "a2"}, {"device": "b", "n": "b1"})
    assert h.step() == []  # both keys' batches wait for a third event
    (cancel,) = h.emit({"device": "a", "n": "stop"}, asset="cancels")
    assert h.step() == []
    # a's gathered events left the queue cancelled by the event; b's batch still gathers
    assert h.cancelled() == {"a1": cancel, "a2": cancel}
    assert h.queued() == 1 and h.runs() == []
    # the decision is listed with the held events, saying which event cancelled them
    with db.engine.connect() as conn:
        held = store_held.held_events(conn, 10, "batched")
        assert store_held.held_counts(conn) == {("batched", "cancelled"): 2}
    assert {(e["event_id"], e["held_by"], e["key"]) for e in held} == {
        (e, f"cancelled by event {cancel}", "a") for e in _ids(db, "a1", "a2")
    }
    # events of a after the cancel gather and run as usual, without the cancelled ones
    h.emit({"device": "a", "n": "a3"}, {"device": "a", "n": "a4"}, {"device": "a", "n": "a5"})
    assert h.step() == ["a5"]
    assert [r["names"] for r in h.runs()] == [["a3", "a4", "a5"]]
    # b's batch is released by its max_wait, with b's event alone
    h.clock += timedelta(seconds=61)
    assert h.step() == ["b1"]
    assert [r["names"] for r in h.runs()] == [["a3", "a4", "a5"], ["b1"]]
    assert h.cancelled() == {"a1": cancel, "a2": cancel}


def test_cancel_on_in_one_pass_splits_a_batch_at_the_cancel(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    dag = _dag("split", key="device", batch=EventBatch(max_events=2, max_wait=60), cancel_on=CANCELS)
    h = Harness(db, dag, monkeypatch)
    h.emit({"device": "a", "n": "a1"})
    (cancel,) = h.emit({"device": "a", "n": "stop"}, asset="cancels")
    h.emit({"device": "a", "n": "a2"})
    # one pass sees a1, the cancel and a2: a1 is cancelled, a2 does not make a batch with it
    assert h.step() == []
    assert h.cancelled() == {"a1": cancel} and h.runs() == []
    h.emit({"device": "a", "n": "a3"})
    assert h.step() == ["a3"]
    assert [r["names"] for r in h.runs()] == [["a2", "a3"]]


def test_cancel_on_cancels_the_events_an_asset_condition_holds(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    dag = _dag("pairs", schedule=READINGS & PARTS, key="device", cancel_on=CANCELS)
    h = Harness(db, dag, monkeypatch)
    h.emit({"device": "a", "n": "r1"})
    assert h.step() == []  # the condition waits for a part
    (cancel,) = h.emit({"device": "a", "n": "stop"}, asset="cancels")
    h.step()
    assert h.cancelled() == {"r1": cancel}
    # a part after the cancel does not complete the cancelled reading; a new reading does
    h.emit({"device": "a", "n": "p1"}, asset="parts")
    assert h.step() == []
    h.emit({"device": "a", "n": "r2"})
    assert h.step() == ["r2"]
    assert [r["names"] for r in h.runs()] == [["p1", "r2"]]


def test_cancel_on_ends_an_open_debounce_burst_and_later_events_open_a_new_one(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(db, _dag("burst", key="device", debounce=10, cancel_on=CANCELS), monkeypatch)
    h.emit({"device": "a", "n": "a1"})
    assert h.step() == []
    (cancel,) = h.emit({"device": "a", "n": "stop"}, asset="cancels")
    h.emit({"device": "a", "n": "a2"})
    assert h.step() == []
    # the burst of a1 ended cancelled; a2, after the cancel, opened a burst of its own
    assert h.state_of("a1") == ("cancelled", f"cancelled by event {cancel}")
    assert h.state_of("a2") == ("queued", "debounce")
    h.clock += timedelta(seconds=11)
    assert h.step() == ["a2"]


def _ids(db: Database, *names: str) -> set[int]:
    """The ids of the events whose payload is named `names`."""
    ae = tables.asset_event
    with db.engine.connect() as conn:
        rows = conn.execute(select(ae.c.id, ae.c.extra)).all()
    return {int(r.id) for r in rows if r.extra["payload"].get("n") in names}


def test_cancel_key_reads_the_cancelling_events_own_field(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    dag = _dag("refunds", key="order_id", cancel_on=[CANCELS], cancel_key="order.id")
    h = Harness(db, dag, monkeypatch)
    h.emit({"order_id": "o1", "n": "o1"}, {"order_id": "o2", "n": "o2"})
    assert sorted(h.step()) == ["o1", "o2"]
    (cancel,) = h.emit({"order": {"id": "o2"}, "n": "x"}, asset="cancels")
    h.step()
    assert h.state_of("o2") == ("cancelled", f"cancelled by event {cancel}")
    assert h.state_of("o1") == ("running", None)
    # a cancelling event without the key cancels nothing (its key is null, no run's)
    h.emit({"n": "y"}, asset="cancels")
    h.step()
    assert h.state_of("o1") == ("running", None)


def test_a_pass_reads_only_the_keys_marked_since_the_last_and_a_sweep_reads_them_all(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flow, "_swept", {})
    h = Harness(db, _dag("marked", key="device", max_active_runs_per_key=1), monkeypatch)
    h.emit({"device": "a", "n": "a1"}, {"device": "a", "n": "a2"}, {"device": "b", "n": "b1"})
    assert sorted(h.step()) == ["a1", "b1"]  # the first pass of a process reads every key
    assert h.step() == []  # takes the marks of the new runs: both keys busy
    with db.engine.connect() as conn:
        assert store_flow.dirty_count(conn, "marked") == 0
    # a run ending through the store marks its key, and the next pass starts the key's next run
    h.finish("b1")
    # a run ending behind the store's back (no mark, as a deleted run) is not read by a pass...
    dr = tables.dag_run
    with db.engine.begin() as conn:
        conn.execute(update(dr).where(dr.c.run_key == "a", dr.c.state == "running").values(state="success"))
    h.running.pop("a1")
    assert h.step() == []
    assert h.state_of("a2") == ("queued", "key")
    # ...until the sweep, the net under the marks
    h.clock += flow.SWEEP_EVERY
    assert h.step() == ["a2"]


def test_a_pass_without_room_for_a_run_leaves_the_marks_to_the_next(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flow, "_swept", {})
    h = Harness(db, _dag("full", key="device", max_active_runs_per_key=1), monkeypatch)
    h.emit({"device": "a", "n": "a1"})
    assert h.step() == ["a1"]  # the first pass of a process sweeps
    h.emit({"device": "a", "n": "a2"}, {"device": "b", "n": "b1"})
    h.scheduler.max_waiting_tries = 0  # the executor's queue is full: no run may start
    assert h.step() == []
    with db.engine.connect() as conn:
        assert store_flow.dirty_count(conn, "full") == 2  # the new runs' marks, untouched
    h.scheduler.max_waiting_tries = 100
    assert h.step() == ["b1"]
    assert h.finish("a1") == ["a2"]


def test_keys_cut_by_the_dag_limit_stay_marked_until_they_start(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flow, "_swept", {})
    h = Harness(db, _dag("cut", key="device", max_active_runs_per_key=1, max_active_runs=1), monkeypatch)
    h.emit({"device": "a", "n": "a1"}, {"device": "b", "n": "b1"}, {"device": "c", "n": "c1"})
    assert h.step() == ["a1"]
    assert h.step() == []
    with db.engine.connect() as conn:
        # b and c wait on the DAG's limit, not on a run of their own key: no end of theirs would mark them
        assert store_flow.dirty_count(conn, "cut") == 2
    assert h.finish("a1") == ["b1"]
    assert h.finish("b1") == ["c1"]
