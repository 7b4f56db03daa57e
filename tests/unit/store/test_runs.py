"""`store.runs`: run rows are inserted in one place and move only as `store.states` allows (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from herald.store import runs
from herald.store import tables as t
from herald.store.states import RunState, RunType, TryState
from herald.store.types import utcnow
from tests.unit.commands.conftest import Db

dr = t.dag_run


def pk(db: Db, run_id: str) -> int:
    return int(db.one(select(dr.c.id).where(dr.c.run_id == run_id))[0])


def state(db: Db, run_id: str) -> str:
    with db.engine.connect() as conn:
        found = runs.state_of(conn, run_id)
    assert found is not None
    return found


def test_a_triggered_run_is_queued_then_runs_then_ends(db: Db) -> None:
    with db.engine.begin() as conn:
        run_id = runs.trigger_run(conn, "manual", {"k": 1})
    assert run_id.startswith(f"{RunType.MANUAL}__")
    assert db.one(select(dr.c.state, dr.c.conf, dr.c.run_type).where(dr.c.run_id == run_id)) == (
        RunState.QUEUED,
        {"k": 1},
        RunType.MANUAL,
    )
    run_pk = pk(db, run_id)
    with db.engine.begin() as conn:
        runs.finish(conn, RunState.SUCCESS, [run_pk], utcnow())  # not started: stays queued
    assert state(db, run_id) == RunState.QUEUED
    with db.engine.begin() as conn:
        runs.start(conn, [run_pk], utcnow())
        runs.finish(conn, RunState.SUCCESS, [run_pk], utcnow())
    with db.engine.begin() as conn:
        runs.finish(conn, RunState.FAILED, [run_pk], utcnow())  # a finished run does not end twice
    assert state(db, run_id) == RunState.SUCCESS


def test_a_run_that_failed_before_starting_may_be_queued_again_and_a_finished_one_rerun(db: Db) -> None:
    never_started = db.add_run(RunState.FAILED, {})
    succeeded = db.add_run(RunState.SUCCESS, {"extract": TryState.SUCCESS})
    failed_pk, succeeded_pk = pk(db, never_started), pk(db, succeeded)
    with db.engine.begin() as conn:
        assert runs.requeue(conn, failed_pk) is True
        assert runs.requeue(conn, succeeded_pk) is False
        assert runs.rerun(conn, succeeded_pk) is True
        assert runs.rerun(conn, failed_pk) is False  # queued again: it was never started
    assert (state(db, never_started), state(db, succeeded)) == (RunState.QUEUED, RunState.RUNNING)


def test_a_replay_run_consumes_the_event_it_replays(db: Db) -> None:
    from herald.commands import events as event_commands

    event_id, _ = event_commands.emit(db.engine, "orders", {"n": 1})
    with db.engine.begin() as conn:
        run_id = runs.replay_run(conn, "process_orders", event_id)
    with db.engine.connect() as conn:
        linked = runs.events_of(conn, [pk(db, run_id)])
    assert run_id.startswith(f"{RunType.REPLAY}__")
    assert [(int(e.id), e.name) for e in linked] == [(event_id, "orders")]


def test_a_run_starts_once_and_a_run_another_scheduler_is_starting_is_left_to_it(db: Db) -> None:
    first, second = (pk(db, db.add_run(RunState.QUEUED, {})) for _ in range(2))
    if db.engine.dialect.name == "postgresql":
        # the first transaction is still open: the second skips its run, waits for nothing
        with db.engine.begin() as one, db.engine.begin() as other:
            assert runs.start(one, [first], utcnow()) == [first]
            assert runs.start(other, [first, second], utcnow()) == [second]
    else:  # one writer at a time
        with db.engine.begin() as conn:
            assert runs.start(conn, [first], utcnow()) == [first]
        with db.engine.begin() as conn:
            assert runs.start(conn, [first, second], utcnow()) == [second]
    with db.engine.begin() as conn:
        assert runs.start(conn, [first, second], utcnow()) == []  # running already: not started twice
    assert {r.state for r in db.all(select(dr.c.state))} == {RunState.RUNNING}


def test_runs_made_at_one_time_get_distinct_ids_even_when_their_random_parts_meet(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a pass makes thousands of runs at one `now`: a repeated random suffix must not fail it
    suffixes = iter(["aaaaaaaa", "aaaaaaaa", "aaaaaaaa", "bbbbbbbb", "cccccccc"])
    monkeypatch.setattr(runs.secrets, "token_hex", lambda n: next(suffixes))
    now = utcnow()
    with db.engine.begin() as conn:
        pks = runs.create_runs(conn, ["d", "d", "d"], RunType.ASSET_TRIGGERED, now)
    with db.engine.connect() as conn:
        ids = conn.execute(select(dr.c.run_id).where(dr.c.id.in_(pks)).order_by(dr.c.id)).scalars().all()
    assert [i.rsplit("_", 1)[1] for i in ids] == ["aaaaaaaa", "bbbbbbbb", "cccccccc"]


def test_runs_made_for_events_each_hold_their_own_events_and_take_them_off_the_queue(db: Db) -> None:
    from herald.store.events import NewEvent, insert_events

    now = utcnow()
    with db.engine.begin() as conn:
        asset_id = int(conn.execute(select(t.asset.c.id).limit(1)).scalar_one())
        events = [NewEvent(asset_id, "api", f"k{i}", {}, now) for i in range(5)]
        insert_events(conn, events, {asset_id: ["d"]}, now)
        eq = t.event_queue
        pairs = [(int(q), int(e)) for q, e in conn.execute(select(eq.c.id, eq.c.event_id).order_by(eq.c.id))]
    assert len(pairs) == 5
    # three runs: two events, one, two; the first and the last start at once
    per_run = [pairs[0:2], pairs[2:3], pairs[3:5]]
    with db.engine.begin() as conn:
        pks = runs.create_event_runs(conn, ["d", "d", "d"], per_run, now, [True, False, True])
    assert pks == sorted(pks) and len(set(pks)) == 3
    with db.engine.connect() as conn:
        held = conn.execute(select(t.dag_run_event.c.run_pk, t.dag_run_event.c.event_id)).all()
        states = dict(conn.execute(select(dr.c.id, dr.c.state).where(dr.c.id.in_(pks))).all())
        left = conn.execute(select(t.event_queue.c.id)).scalars().all()
    assert sorted((int(r), int(e)) for r, e in held) == sorted(
        (pk, e) for pk, evs in zip(pks, per_run, strict=True) for _, e in evs
    )
    assert [states[pk] for pk in pks] == [RunState.RUNNING, RunState.QUEUED, RunState.RUNNING]
    assert left == []
