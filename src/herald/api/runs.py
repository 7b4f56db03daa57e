"""Runs: filter by DAG, state and time; tasks, logs, the events that caused each; retry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import Connection

from herald.api.deps import AUTH_RESPONSES, CONFLICT, NOT_FOUND, Conn, Db, Reader, Wake, Writer
from herald.api.paging import PageParams, utc
from herald.api.schemas import (
    BulkRetried,
    BulkRetry,
    HeldEvent,
    Page,
    RetryResult,
    Run,
    RunDetail,
    TaskInstance,
    TaskLog,
)
from herald.commands import bulk
from herald.commands import runs as run_commands
from herald.commands.errors import NotFound
from herald.store import held as store_held
from herald.store import queries
from herald.store.states import RunState

router = APIRouter(tags=["runs"], responses=AUTH_RESPONSES)


def run_detail(conn: Connection, run_id: str) -> dict[str, Any]:
    run = queries.get_run(conn, run_id)
    if run is None:
        raise NotFound(f"no run {run_id!r}", "list runs with GET /api/v1/runs")
    run["events"] = queries.events_by_id(conn, run["event_ids"], summary=True)
    return run


@router.get("/runs", response_model=Page[Run], summary="Runs, newest first")
def list_runs(
    _: Reader,
    conn: Conn,
    page: PageParams,
    dag_id: Annotated[str | None, Query(description="Only runs of this DAG.")] = None,
    state: Annotated[RunState | None, Query(description="Only runs in this state.")] = None,
    since: Annotated[datetime | None, Query(description="Queued at or after (ISO 8601; UTC if no offset).")] = None,
    until: Annotated[datetime | None, Query(description="Queued before.")] = None,
) -> dict[str, Any]:
    """Runs with the ids of the events each consumed."""
    return page.page(
        lambda limit, offset: queries.list_runs(
            conn, limit, dag_id, state, offset=offset, since=utc(since), until=utc(until)
        )
    )


@router.get(
    "/held_events",
    response_model=Page[HeldEvent],
    summary="Events a window or an absence holds, or a cancel_on event cancelled",
)
def list_held_events(
    _: Reader,
    conn: Conn,
    page: PageParams,
    dag_id: Annotated[str | None, Query(description="Only events held for this DAG.")] = None,
) -> dict[str, Any]:
    """Events that are no run yet, newest first, with the rule holding each: 'window' (waiting for
    its partners in `(a & b).within()`) or 'missing_for' (a key's last event, watched by `missing_for()`);
    and the events a `cancel_on=` event cancelled while they waited for a run ('cancelled by event N':
    no run is made from them)."""
    return page.page(lambda limit, offset: store_held.held_events(conn, limit, dag_id, offset=offset))


@router.get("/runs/{run_id}", response_model=RunDetail, responses=NOT_FOUND, summary="One run")
def get_run(run_id: str, _: Reader, conn: Conn) -> dict[str, Any]:
    """A run with its task instances and the events that caused it."""
    return run_detail(conn, run_id)


@router.get(
    "/runs/{run_id}/tasks", response_model=Page[TaskInstance], responses=NOT_FOUND, summary="A run's task instances"
)
def list_tasks(run_id: str, _: Reader, conn: Conn, page: PageParams) -> dict[str, Any]:
    run = queries.get_run(conn, run_id)
    if run is None:
        raise NotFound(f"no run {run_id!r}", "list runs with GET /api/v1/runs")
    tasks: list[dict[str, Any]] = run["tasks"]
    return page.page(lambda limit, offset: tasks[offset : offset + limit])


@router.get("/runs/{run_id}/tasks/{task_id}/log", response_model=TaskLog, responses=NOT_FOUND, summary="A task's log")
def task_log(
    run_id: str,
    task_id: str,
    _: Reader,
    conn: Conn,
    map_index: Annotated[
        int | None, Query(description="Of a mapped task: this map index (default: the first).", ge=-1)
    ] = None,
) -> dict[str, Any]:
    """What the task printed (stdout, stderr, logging) and its error."""
    found = queries.task_log(conn, run_id, task_id, map_index)
    if found is None:
        run = queries.get_run(conn, run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r}", "list runs with GET /api/v1/runs")
        if map_index is not None and any(x["task_id"] == task_id for x in run["tasks"]):
            indexes = sorted(x["map_index"] for x in run["tasks"] if x["task_id"] == task_id)
            raise NotFound(
                f"task {task_id!r} of run {run_id} has no map index {map_index}", f"its map indexes: {indexes}"
            )
        raise NotFound(
            f"run {run_id} has no task {task_id!r}",
            f"its tasks: {', '.join(x['task_id'] for x in run['tasks']) or 'none yet'}",
        )
    return found


@router.post(
    "/runs/retry", response_model=BulkRetried, responses=NOT_FOUND, summary="Retry the failed runs of a filter"
)
def retry_failed_runs(body: BulkRetry, _: Writer, db: Db, wake: Wake) -> dict[str, Any]:
    """Retry every failed run of the filter (a DAG, queued since a time), newest first, up to 500."""
    done = bulk.retry_failed_runs(db, body.dag_id, utc(body.since))
    if done:
        wake()
    return {"retried": [{"run_id": d.run_id, "state": d.state, "retried": d.retried} for d in done]}


@router.post(
    "/runs/{run_id}/retry", response_model=RetryResult, responses={**NOT_FOUND, **CONFLICT}, summary="Retry a run"
)
def retry_run(run_id: str, _: Writer, db: Db, wake: Wake) -> dict[str, Any]:
    """Run every failed task of a failed run again, and the tasks they held back."""
    done = run_commands.retry(db, run_id, None)
    wake()
    return {"run_id": done.run_id, "state": done.state, "retried": done.retried}


@router.post(
    "/runs/{run_id}/tasks/{task_id}/retry",
    response_model=RetryResult,
    responses={**NOT_FOUND, **CONFLICT},
    summary="Retry a failed task",
)
def retry_task(run_id: str, task_id: str, _: Writer, db: Db, wake: Wake) -> dict[str, Any]:
    """Run one failed task again, and the tasks it held back."""
    done = run_commands.retry(db, run_id, task_id)
    wake()
    return {"run_id": done.run_id, "state": done.state, "retried": done.retried}
