"""Lost workers are not task failures (SQLite and PostgreSQL): a try whose worker died or went
silent goes back to the queue under the same try number, without using a retry, a few times at
most; each requeue is kept in the try's history, and one loss too many fails it with the reason."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from herald import DAG, task
from herald.executors.database import DatabaseExecutor
from herald.executors.records import TaskRequest, TaskResult
from herald.scheduler.scheduler import Scheduler
from herald.store import queries, tables
from herald.store.db import Database
from herald.store.migrate import upgrade
from herald.store.runs import trigger_run
from herald.store.states import TryState
from herald.store.types import utcnow
from tests.unit.scheduler.test_pass import _Executor, _step

ti = tables.task_instance


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    found = Database(database_url)
    upgrade(found.engine)
    yield found
    found.close()


def _dag() -> DAG:
    with DAG("crashy") as dag:

        @task(retries=2)
        def work() -> int:
            return 1

        work()
    return dag


def _scheduler(db: Database, executor: object, requeues: int) -> Scheduler:
    dag = _dag()
    scheduler = Scheduler(db, executor, asyncio.Event(), max_lost_requeues=requeues)  # type: ignore[arg-type]
    scheduler.update({dag.dag_id: dag}, {}, {})
    with db.engine.begin() as conn:
        conn.execute(
            tables.dag.insert().values(
                dag_id=dag.dag_id, fileloc="", task_ids=[], tasks=[], is_paused=False, updated_at=utcnow()
            )
        )
        trigger_run(conn, dag.dag_id, {})
    return scheduler


def _died(request: TaskRequest) -> TaskResult:
    """What the local pool reports when the process running a try died."""
    return TaskResult(
        request.ti_id,
        TryState.FAILED,
        error="the worker process running the task died (signal SIGKILL)",
        try_number=request.try_number,
        hostname="local:4242",
        lost=True,
    )


def _try(db: Database) -> tuple[str, int, str | None]:
    with db.engine.connect() as conn:
        row = conn.execute(select(ti.c.state, ti.c.try_number, ti.c.error)).one()
    return row.state, row.try_number, row.error


def _history(db: Database) -> list[dict[str, object]]:
    with db.engine.connect() as conn:
        run_id = conn.execute(select(tables.dag_run.c.run_id)).scalar_one()
        run = queries.get_run(conn, run_id)
    assert run is not None
    requeues: list[dict[str, object]] = run["tasks"][0]["requeues"]
    return requeues


def test_a_try_that_kills_its_worker_every_time_is_requeued_n_times_then_fails_without_using_its_retries(
    db: Database,
) -> None:
    executor = _Executor()
    scheduler = _scheduler(db, executor, requeues=2)
    (first,) = _step(scheduler, executor)
    assert first.try_number == 1

    # Given a worker that dies under the try twice: the try is handed out again each time, same number.
    again = _step(scheduler, executor, _died(first))
    assert [(r.ti_id, r.try_number) for r in again] == [(first.ti_id, 1)]
    assert _try(db)[:2] == (TryState.QUEUED, 1)
    (third,) = _step(scheduler, executor, _died(again[0]))
    assert third.try_number == 1

    # When it dies a third time: the try fails with the reason, its retries (2) untouched.
    assert _step(scheduler, executor, _died(third)) == []
    state, try_number, error = _try(db)
    assert (state, try_number) == (TryState.FAILED, 1)
    assert error is not None and "died (signal SIGKILL)" in error and "lost 3 times" in error
    with db.engine.connect() as conn:
        assert conn.execute(select(tables.dag_run.c.state)).scalar_one() == "failed"
    history = _history(db)
    assert [(h["try_number"], h["hostname"]) for h in history] == [(1, "local:4242"), (1, "local:4242")]
    assert all("died (signal SIGKILL)" in str(h["reason"]) for h in history)


def test_a_worker_lost_once_costs_no_retry_and_the_try_succeeds_under_its_first_number(db: Database) -> None:
    executor = _Executor()
    scheduler = _scheduler(db, executor, requeues=3)
    (first,) = _step(scheduler, executor)
    # Two notices of the same loss in one pass (the pool and a restart): one requeue.
    (again,) = _step(scheduler, executor, _died(first), _died(first))
    _step(scheduler, executor, TaskResult(again.ti_id, TryState.SUCCESS, result=1, try_number=again.try_number))
    assert _try(db) == (TryState.SUCCESS, 1, None)
    assert len(_history(db)) == 1


def test_a_task_that_raises_still_uses_its_retries(db: Database) -> None:
    executor = _Executor()
    scheduler = _scheduler(db, executor, requeues=3)
    (first,) = _step(scheduler, executor)
    (retry,) = _step(scheduler, executor, TaskResult(first.ti_id, TryState.FAILED, error="ValueError", try_number=1))
    assert retry.try_number == 2  # retry_delay 0: the retry is queued in the same pass
    assert _try(db)[:2] == (TryState.QUEUED, 2)
    assert _history(db) == []


def test_a_silent_herald_worker_past_the_heartbeat_timeout_is_lost_and_its_try_queued_again(db: Database) -> None:
    # every pass looks for lost tries (by default at most once a second)
    executor = DatabaseExecutor(heartbeat_timeout=7, max_waiting_tries=100, lost_every=0)
    scheduler = _scheduler(db, executor, requeues=1)
    scheduler._pass([], [])
    assert _try(db)[:2] == (TryState.QUEUED, 1)

    def claimed_and_silent(seconds: float) -> None:
        with db.engine.begin() as conn:
            conn.execute(
                update(ti).values(
                    state=TryState.RUNNING, hostname="worker:a:1", heartbeat_at=utcnow() - timedelta(seconds=seconds)
                )
            )

    claimed_and_silent(5)  # within the timeout: alive
    scheduler._pass([], [])
    assert _try(db)[:2] == (TryState.RUNNING, 1)

    claimed_and_silent(8)  # past HERALD_HEARTBEAT_TIMEOUT (7 s here): lost, back to the queue
    scheduler._pass([], [])
    assert _try(db)[:2] == (TryState.QUEUED, 1)
    (requeue,) = _history(db)
    assert requeue["hostname"] == "worker:a:1" and "stopped sending heartbeats for 7s" in str(requeue["reason"])

    claimed_and_silent(8)  # lost again, past the one requeue allowed: failed with the reason
    scheduler._pass([], [])
    state, try_number, error = _try(db)
    assert (state, try_number) == (TryState.FAILED, 1)
    assert error is not None and "stopped sending heartbeats" in error and "lost 2 times" in error
