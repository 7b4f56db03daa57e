"""Flow control's store: the admission query, holds, skips and cancels, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from herald.store import flow
from herald.store import runs as store_runs
from herald.store import tables as t
from herald.store.flow import RunFlow
from herald.store.states import RunState, RunType
from herald.store.types import utcnow

NOW = utcnow()


def _dag(engine: Engine, dag_id: str = "d") -> None:
    with engine.begin() as conn:
        conn.execute(t.dag.insert().values(dag_id=dag_id, fileloc="", task_ids=[], tasks=[], updated_at=NOW))


def _runs(engine: Engine, *flows: RunFlow, dag_id: str = "d") -> list[int]:
    with engine.begin() as conn:
        return store_runs.create_runs(conn, [dag_id] * len(flows), RunType.ASSET_TRIGGERED, NOW, flow=list(flows))


def _candidates(engine: Engine, per_key: int | None, now: object = NOW) -> list[int]:
    with engine.connect() as conn:
        return [int(r.id) for r in flow.candidates(conn, "d", per_key, now, 100)]  # type: ignore[arg-type]


def _state(engine: Engine, pk: int) -> tuple[str, str | None]:
    with engine.connect() as conn:
        row = conn.execute(select(t.dag_run.c.state, t.dag_run.c.held_by).where(t.dag_run.c.id == pk)).one()
    return row.state, row.held_by


def test_candidates_are_each_keys_next_runs_within_its_limit(engine: Engine) -> None:
    _dag(engine)
    a1, b1, a2, a3, free = _runs(engine, RunFlow("a"), RunFlow("b"), RunFlow("a"), RunFlow("a"), RunFlow(None))
    assert _candidates(engine, 1) == [a1, b1, free]
    assert _candidates(engine, 2) == [a1, b1, a2, free]
    assert _candidates(engine, None) == [a1, b1, a2, a3, free]
    with engine.begin() as conn:
        store_runs.start(conn, [a1], NOW)
    # a running run counts against its key: a2 waits for a1, a3 for both
    assert _candidates(engine, 1) == [b1, free]
    assert _candidates(engine, 2) == [b1, a2, free]
    with engine.begin() as conn:
        store_runs.finish(conn, RunState.SUCCESS, [a1], NOW)
    assert _candidates(engine, 1) == [b1, a2, free]


def test_candidates_come_highest_priority_first_and_a_key_follows_its_priority_order(engine: Engine) -> None:
    _dag(engine)
    low, high, a_low, a_high = _runs(engine, RunFlow("x", 1), RunFlow("y", 9), RunFlow("a", 2), RunFlow("a", 5))
    assert _candidates(engine, None) == [high, a_high, a_low, low]
    assert _candidates(engine, 1) == [high, a_high, low]


def test_a_run_held_until_later_is_no_candidate_but_still_holds_its_key_back(engine: Engine) -> None:
    _dag(engine)
    later = NOW + timedelta(seconds=30)
    held, behind = _runs(engine, RunFlow("a", held_by="debounce", held_until=later), RunFlow("a"))
    assert _candidates(engine, 1) == []
    assert _candidates(engine, None) == [behind]
    assert _candidates(engine, 1, later) == [held]
    with engine.connect() as conn:
        assert flow.next_release(conn, "d", NOW) == later
        assert flow.next_release(conn, "d", later) is None


def test_holds_skips_and_cancels_record_the_rule_and_move_only_what_they_may(engine: Engine) -> None:
    _dag(engine)
    queued, skipped, running, done = _runs(engine, RunFlow("a"), RunFlow("a"), RunFlow("b"), RunFlow("c"))
    with engine.begin() as conn:
        store_runs.start(conn, [running, done], NOW)
        store_runs.finish(conn, RunState.SUCCESS, [done], NOW)
        flow.hold(conn, [(queued, "throttle", NOW)])
        flow.end_queued(conn, RunState.SKIPPED, [(skipped, "rate_limit"), (running, "rate_limit")], NOW)
        cancelled = flow.cancel_running(conn, [running, done], "cancelled by run X", NOW)
    assert cancelled == [running]
    assert _state(engine, queued) == ("queued", "throttle")
    assert _state(engine, skipped) == ("skipped", "rate_limit")
    assert _state(engine, running) == ("cancelled", "cancelled by run X")
    assert _state(engine, done) == ("success", None)
    with engine.begin() as conn:
        store_runs.start(conn, [queued], NOW)
    assert _state(engine, queued) == ("running", None)  # starting clears the hold
    with engine.connect() as conn:
        assert flow.held_counts(conn, "d") == {"rate_limit": 1, "cancelled by run X": 1}


def test_running_runs_and_starts_by_key(engine: Engine) -> None:
    _dag(engine)
    a1, a2, b1 = _runs(engine, RunFlow("a"), RunFlow("a"), RunFlow("b"))
    with engine.begin() as conn:
        store_runs.start(conn, [a1, b1], NOW - timedelta(seconds=100))
        store_runs.start(conn, [a2], NOW)
        store_runs.finish(conn, RunState.SUCCESS, [b1], NOW)
    with engine.connect() as conn:
        running = flow.running_of_keys(conn, "d", ["a", "b", "c"])
        assert {k: [int(r.id) for r in v] for k, v in running.items()} == {"a": [a1, a2]}
        assert dict(flow.starts_since(conn, "d", ["a", "b"], NOW - timedelta(seconds=10))) == {"a": [NOW]}
        assert flow.running_count(conn, "d") == 2


def test_one_transaction_at_a_time_holds_a_dag_for_flow_decisions(engine: Engine, database_url: str) -> None:
    _dag(engine, "d")
    _dag(engine, "e")
    with engine.connect() as first:
        first.begin()
        assert flow.lock_dags(first, ["e", "d", "missing"]) == ({"d", "e"}, set())
        if database_url.startswith("postgresql"):
            with engine.connect() as second:
                second.begin()
                # SKIP LOCKED: left to the first; a DAG without a row is nobody's
                assert flow.lock_dags(second, ["d", "e", "missing"]) == (set(), {"d", "e"})
                second.rollback()
        first.rollback()


def test_a_running_run_another_transaction_holds_is_not_cancelled(engine: Engine, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer: nothing else can hold the row")
    _dag(engine)
    (run,) = _runs(engine, RunFlow("a"))
    with engine.begin() as conn:
        store_runs.start(conn, [run], NOW)
    with engine.connect() as holder:
        holder.begin()
        # as a scheduler applying results of the run's tries locks it (store.runs.lock_runs_of_tries)
        holder.execute(select(t.dag_run.c.id).where(t.dag_run.c.id == run).with_for_update()).all()
        with engine.begin() as conn:
            assert flow.cancel_running(conn, [run], "cancelled by run X", NOW) == []
        holder.rollback()
    assert _state(engine, run) == ("running", None)


def test_keys_are_marked_by_new_runs_and_ends_and_a_pass_takes_the_marks(engine: Engine) -> None:
    _dag(engine)
    a1, a2, b1, free = _runs(engine, RunFlow("a"), RunFlow("a"), RunFlow("b"), RunFlow(None))
    with engine.begin() as conn:
        assert flow.take_dirty(conn, "d", 100) == ["a", "b"]  # new runs mark their key; no key, no mark
        assert flow.take_dirty(conn, "d", 100) == []
        store_runs.start(conn, [a1, b1], NOW)
        assert flow.take_dirty(conn, "d", 100) == []  # a start frees nothing
        store_runs.finish(conn, RunState.SUCCESS, [a1], NOW)
        flow.end_queued(conn, RunState.SKIPPED, [(a2, "rate_limit")], NOW)
        flow.cancel_running(conn, [b1], "cancelled by event 1", NOW, event_id=1)
        assert flow.take_dirty(conn, "d", 1) == ["a"]  # at most `limit`, in key order
        assert flow.take_dirty(conn, "d", 100) == ["b"]
    # the candidates of the taken keys only, and always the runs without a key
    c1, d1 = _runs(engine, RunFlow("c"), RunFlow("d"))
    with engine.connect() as conn:
        assert [int(r.id) for r in flow.candidates(conn, "d", 1, NOW, 100, ["c"])] == [free, c1]
        assert [int(r.id) for r in flow.candidates(conn, "d", 1, NOW, 100)] == [free, c1, d1]


def _blocked_until(check: object, seconds: float = 0.5) -> bool:
    """True when `check` (a thread) is still running after `seconds`: it waits for a lock."""
    import threading

    assert isinstance(check, threading.Thread)
    check.join(seconds)
    return check.is_alive()


def test_a_mark_made_while_a_pass_takes_the_marks_is_never_lost(engine: Engine, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("one SQLite writer at a time: a mark and a pass never overlap")
    import threading

    _dag(engine)
    _runs(engine, RunFlow("k"))
    # a pass takes k's mark; a run of k ends meanwhile in another transaction: its mark waits
    # for the pass and stays for the next one
    with engine.connect() as taking:
        taking.begin()
        assert flow.take_dirty(taking, "d", 100) == ["k"]

        def mark() -> None:
            with engine.begin() as conn:
                flow.mark_dirty(conn, [("d", "k")])

        marking = threading.Thread(target=mark)
        marking.start()
        assert _blocked_until(marking)
        taking.commit()
    marking.join(30)
    with engine.connect() as conn:
        assert flow.dirty_count(conn, "d") == 1
    # a run of k ends (its mark uncommitted) as a pass starts: the pass waits, then sees the end
    with engine.connect() as ending:
        ending.begin()
        flow.mark_dirty(ending, [("d", "k")])
        taken: list[str] = []

        def take() -> None:
            with engine.begin() as conn:
                taken.extend(flow.take_dirty(conn, "d", 100))

        taking_thread = threading.Thread(target=take)
        taking_thread.start()
        assert _blocked_until(taking_thread)
        ending.commit()
    taking_thread.join(30)
    assert taken == ["k"]


def test_a_pass_clears_only_the_marks_it_decided_and_a_mark_made_since_stays(engine: Engine) -> None:
    _dag(engine)
    _runs(engine, RunFlow("a"), RunFlow("b"), RunFlow("c"))
    with engine.begin() as conn:
        marks = flow.lock_dirty(conn, "d", 100)
        assert sorted(marks) == ["a", "b", "c"]
        flow.mark_dirty(conn, [("d", "b")])  # b changed again during the pass (a cancel, a skip)
        flow.clear_dirty(conn, "d", {k: v for k, v in marks.items() if k != "c"})  # c undecided
    with engine.begin() as conn:
        assert flow.take_dirty(conn, "d", 100) == ["b", "c"]


def test_a_mark_made_while_a_pass_holds_the_marks_it_reads_is_never_lost(engine: Engine, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("one SQLite writer at a time: a mark and a pass never overlap")
    import threading

    _dag(engine)
    _runs(engine, RunFlow("k"))
    with engine.connect() as taking:
        taking.begin()
        marks = flow.lock_dirty(taking, "d", 100)
        assert list(marks) == ["k"]

        def mark() -> None:
            with engine.begin() as conn:
                flow.mark_dirty(conn, [("d", "k")])

        marking = threading.Thread(target=mark)
        marking.start()
        assert _blocked_until(marking)  # it waits for the pass's lock on the mark
        flow.clear_dirty(taking, "d", marks)
        taking.commit()
    marking.join(30)
    with engine.connect() as conn:
        assert flow.dirty_count(conn, "d") == 1


def test_candidates_of_marked_keys_are_those_a_read_of_every_key_finds(engine: Engine) -> None:
    # the marked keys' candidates are read key by key (running runs counted, then each key's
    # queued runs ranked); a read of every key ranks runs one by one: both must agree, with
    # priorities, running runs, holds ahead of a run, and runs without a key
    import random

    rng = random.Random(16)
    _dag(engine)
    later = NOW + timedelta(seconds=60)
    flows = []
    for _ in range(120):
        until = later if rng.random() < 0.15 else None
        held = "throttle" if until is not None else "key"
        key = None if rng.random() < 0.05 else f"k{rng.randrange(12)}"
        flows.append(RunFlow(key, float(rng.choice([0, 0, 1, 5])), held, until))
    pks = _runs(engine, *flows)
    with engine.begin() as conn:
        store_runs.start(conn, [pk for pk in pks if rng.random() < 0.2], NOW)
    keys = sorted({f.key for f in flows if f.key is not None})
    with engine.connect() as conn:
        for per_key in (1, 2, 3):
            for now in (NOW, later):
                every = [int(r.id) for r in flow.candidates(conn, "d", per_key, now, 1000)]
                marked = [int(r.id) for r in flow.candidates(conn, "d", per_key, now, 1000, keys)]
                assert marked == every, (per_key, now)
                assert [int(r.id) for r in flow.candidates(conn, "d", per_key, now, 5, keys)] == every[:5]
