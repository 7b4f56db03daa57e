"""`store.try_history`: every try that ends is kept with why, in the write that ended it (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from herald.store import queries, retention, try_history
from herald.store import tables as t
from herald.store import tries as store_tries
from herald.store.states import RunState, TryEnd, TryState
from herald.store.types import utcnow
from tests.unit.commands.conftest import Db
from tests.unit.store.test_tries import ids


def history(db: Db, run_id: str) -> dict[str, list[tuple[Any, ...]]]:
    with db.engine.connect() as conn:
        run = queries.get_run(conn, run_id)
    assert run is not None
    return {
        task["task_id"]: [(x["try_number"], x["state"], x["reason"], x["error"], x["hostname"]) for x in task["tries"]]
        for task in run["tasks"]
    }


def start(db: Db, ti_id: int, worker: str) -> None:
    with db.engine.begin() as conn:
        store_tries.queue(conn, [ti_id])
        store_tries.mark_started(conn, [(ti_id, utcnow(), worker)])


def test_each_ended_try_is_kept_with_why_and_a_refused_write_keeps_nothing(db: Db) -> None:
    run = db.add_run(RunState.RUNNING, {"extract": TryState.SCHEDULED})
    task = ids(db, run)["extract"]
    start(db, task, "w1")
    now = utcnow()
    with db.engine.begin() as conn:
        store_tries.write_ends(
            conn,
            [
                {
                    "id": task,
                    "state": TryState.UP_FOR_RETRY,
                    "ended_at": now,
                    "error": "timed out after 1s (timeout=1)",
                    "reason": TryEnd.TIMED_OUT,
                }
            ],
        )
    start(db, task, "w2")
    with db.engine.begin() as conn:
        store_tries.write_ends(
            conn, [{"id": task, "state": TryState.SUCCESS, "ended_at": now, "error": None, "reason": TryEnd.SUCCESS}]
        )
    # A late result of the same try: the guard refuses it, and the history keeps nothing of it.
    with db.engine.begin() as conn:
        store_tries.write_ends(
            conn, [{"id": task, "state": TryState.FAILED, "ended_at": now, "error": "late", "reason": TryEnd.FAILED}]
        )
    assert history(db, run)["extract"] == [
        (1, "up_for_retry", "timed_out", "timed out after 1s (timeout=1)", "w1"),
        (2, "success", "success", None, "w2"),
    ]
    with db.engine.connect() as conn:
        (first, _) = try_history.of_run(conn, int(conn.execute(select(t.dag_run.c.id)).scalar_one()))[("extract", -1)]
    assert first.started_at is not None and first.ended_at == now


def test_tries_ended_without_running_are_kept_as_skipped_upstream_failed_or_cancelled(db: Db) -> None:
    run = db.add_run(RunState.RUNNING, {"extract": TryState.SCHEDULED, "load": TryState.NONE, "report": TryState.NONE})
    task = ids(db, run)
    now = utcnow()
    with db.engine.begin() as conn:
        store_tries.decide(conn, TryState.UPSTREAM_FAILED, [task["load"]], now)
        store_tries.decide(conn, TryState.SKIPPED, [task["report"]], now)
        store_tries.decide(conn, TryState.SKIPPED, [task["report"]], now)  # decided twice: kept once
        store_tries.decide(conn, TryState.SCHEDULED, [task["extract"]], now)  # not an end: nothing kept
    start(db, task["extract"], "w1")
    with db.engine.begin() as conn:
        run_pk = int(conn.execute(select(t.dag_run.c.id).where(t.dag_run.c.run_id == run)).scalar_one())
        # the run is cancelled while extract runs: extract is cancelled, the tries already ended are not
        store_tries.skip_unfinished(conn, [run_pk], now, "cancelled by run test__newer")
    found = history(db, run)
    assert found["load"] == [(0, "upstream_failed", "upstream_failed", None, None)]
    assert found["report"] == [(0, "skipped", "skipped", None, None)]
    assert found["extract"] == [(1, "skipped", "cancelled", "cancelled by run test__newer", "w1")]


def test_a_lost_workers_try_is_kept_as_it_was_before_it_went_back_to_the_queue(db: Db) -> None:
    run = db.add_run(RunState.RUNNING, {"extract": TryState.SCHEDULED})
    task = ids(db, run)["extract"]
    start(db, task, "w1")
    with db.engine.begin() as conn:
        assert store_tries.requeue_lost(conn, [(task, 7, "wrong number", "w1")], utcnow()) == []
        assert store_tries.requeue_lost(conn, [(task, 1, "w1 went silent", "w1")], utcnow()) == [task]
    assert history(db, run)["extract"] == [(1, "queued", "lost_worker", "w1 went silent", "w1")]
    with db.engine.connect() as conn:
        run_pk = int(conn.execute(select(t.dag_run.c.id)).scalar_one())
        (kept,) = try_history.of_run(conn, run_pk)[("extract", -1)]
    assert kept.started_at is not None  # when it started, though the try itself forgot it


def test_retention_deletes_a_runs_try_history_with_it(db: Db) -> None:
    old = db.add_run(RunState.FAILED, {"extract": TryState.FAILED})
    kept = db.add_run(RunState.RUNNING, {"extract": TryState.NONE})
    for run in (old, kept):
        task = ids(db, run)["extract"]
        with db.engine.begin() as conn:
            try_history.record_decided(conn, [task], TryEnd.FAILED)
    assert retention.clean(db.engine, utcnow() + timedelta(minutes=1), pause=0).runs == 1
    with db.engine.connect() as conn:
        left = conn.execute(select(t.task_try.c.run_pk)).scalars().all()
        assert left == [conn.execute(select(t.dag_run.c.id).where(t.dag_run.c.run_id == kept)).scalar_one()]
