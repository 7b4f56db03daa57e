"""Applying results keeps every try with why it ended (SQLite and PostgreSQL): a lost worker,
a time limit, a failure, a success, each a row of the task's history, in the same pass."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from herald.executors.records import TaskRequest, TaskResult
from herald.scheduler.tries import end_of
from herald.store import queries, tables
from herald.store.db import Database
from herald.store.states import TryEnd, TryState
from tests.unit.scheduler.test_lost_workers import _died, _scheduler, db  # noqa: F401
from tests.unit.scheduler.test_pass import _Executor, _step


def _failed(request: TaskRequest, error: str) -> TaskResult:
    return TaskResult(request.ti_id, TryState.FAILED, error=error, try_number=request.try_number, hostname="local:7")


def _history(db: Database) -> list[tuple[int, str, str, str | None]]:  # noqa: F811
    with db.engine.connect() as conn:
        run = queries.get_run(conn, conn.execute(select(tables.dag_run.c.run_id)).scalar_one())
    assert run is not None
    return [(x["try_number"], x["state"], x["reason"], x["error"]) for x in run["tasks"][0]["tries"]]


def test_every_try_of_a_task_is_kept_with_why_it_ended(db: Database) -> None:  # noqa: F811
    executor = _Executor()
    scheduler = _scheduler(db, executor, requeues=3)  # the task has 2 retries
    (first,) = _step(scheduler, executor)
    (again,) = _step(scheduler, executor, _died(first))
    # its time limit stops it; the retry delay is 0: try 2 is queued at once
    (second,) = _step(scheduler, executor, _failed(again, "timed out after 1s (timeout=1); the worker was killed"))
    assert second.try_number == 2
    (third,) = _step(scheduler, executor, _failed(second, "Traceback ...\nValueError: the warehouse is closed"))
    _step(scheduler, executor, TaskResult(third.ti_id, TryState.SUCCESS, result=1, try_number=third.try_number))
    assert _history(db) == [
        (1, "queued", "lost_worker", "the worker process running the task died (signal SIGKILL)"),
        (1, "up_for_retry", "timed_out", "timed out after 1s (timeout=1); the worker was killed"),
        (2, "up_for_retry", "failed", "Traceback ...\nValueError: the warehouse is closed"),
        (3, "success", "success", None),
    ]


@pytest.mark.parametrize(
    ("result", "state", "end"),
    [
        (TaskResult(1, TryState.SUCCESS), TryState.SUCCESS, TryEnd.SUCCESS),
        (TaskResult(1, TryState.SKIPPED), TryState.SKIPPED, TryEnd.SKIPPED),
        (TaskResult(1, TryState.FAILED, error="boom"), TryState.FAILED, TryEnd.FAILED),
        (TaskResult(1, TryState.FAILED, error="lost", lost=True), TryState.FAILED, TryEnd.LOST_WORKER),
        (TaskResult(1, TryState.FAILED, error="timed out after 5s waiting for x"), TryState.FAILED, TryEnd.TIMED_OUT),
        (
            TaskResult(1, TryState.FAILED, error="AirflowSensorTimeout: Sensor has timed out; run duration"),
            TryState.UP_FOR_RETRY,
            TryEnd.TIMED_OUT,
        ),
        (TaskResult(1, TryState.FAILED, error="ValueError: not timed out after all"), TryState.FAILED, TryEnd.FAILED),
    ],
)
def test_why_a_try_ended_is_read_from_its_result(result: TaskResult, state: TryState, end: TryEnd) -> None:
    assert end_of(result, state) is end
