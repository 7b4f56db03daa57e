"""Figures for the UI's charts: a DAG's runs over time with durations and latencies,
its grid of runs by tasks, and a watcher's traffic over time (read-only)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from herald.api.deps import AUTH_RESPONSES, NOT_FOUND, Conn, Reader
from herald.commands import dags as dag_commands
from herald.commands.errors import NotFound
from herald.store import dead_letters, stats
from herald.store.types import utcnow

router = APIRouter(responses=AUTH_RESPONSES)

Minutes = Annotated[int, Query(ge=1, le=60 * 24 * 31, description="How far back to look.")]
Buckets = Annotated[int, Query(ge=1, le=500, description="Into how many equal slices.")]


class Percentiles(BaseModel):
    count: float = Field(description="How many values the percentiles are of.")
    p50: float | None
    p95: float | None
    p99: float | None


class RunSlice(BaseModel):
    start: str
    states: dict[str, int] = Field(description="Runs queued in this slice, by their state now.")


class DagActivity(BaseModel):
    runs: list[RunSlice]
    duration_seconds: Percentiles = Field(description="Runs that ended: from start to end.")
    event_to_task_seconds: Percentiles = Field(description="Event-triggered runs: first event to first task start.")


class GridTask(BaseModel):
    state: str = Field(description="The task's state; a mapped task's most telling expansion's.")
    count: int = Field(description="1, or how many expansions a mapped task has.")


class GridRun(BaseModel):
    run_id: str
    state: str
    queued_at: str
    tasks: dict[str, GridTask]


class WatcherSlice(BaseModel):
    start: str
    events: int
    dead_letters: int


@router.get(
    "/dags/{dag_id}/activity",
    response_model=DagActivity,
    tags=["dags"],
    responses=NOT_FOUND,
    summary="Runs over time, durations and latencies",
)
def dag_activity(dag_id: str, _: Reader, conn: Conn, minutes: Minutes = 60, buckets: Buckets = 30) -> dict[str, Any]:
    """Runs queued in each slice of the last `minutes` by state, run-duration and
    event-to-first-task percentiles of those runs (at most the newest 20,000)."""
    dag_commands.require_dag(conn, dag_id)
    now = utcnow()
    return stats.dag_activity(conn, dag_id, now - timedelta(minutes=minutes), now, buckets)


@router.get(
    "/dags/{dag_id}/grid", response_model=list[GridRun], tags=["dags"], responses=NOT_FOUND, summary="Runs by tasks"
)
def dag_grid(
    dag_id: str,
    _: Reader,
    conn: Conn,
    limit: Annotated[int, Query(ge=1, le=200, description="How many of the newest runs.")] = 25,
) -> list[dict[str, Any]]:
    """The newest runs, oldest first, with each task's state (Airflow's grid view)."""
    dag_commands.require_dag(conn, dag_id)
    return stats.dag_grid(conn, dag_id, limit)


@router.get(
    "/watchers/{watcher_id}/activity",
    response_model=list[WatcherSlice],
    tags=["watchers"],
    responses=NOT_FOUND,
    summary="Events and dead letters over time",
)
def watcher_activity(
    watcher_id: int, _: Reader, conn: Conn, minutes: Minutes = 60, buckets: Buckets = 30
) -> list[dict[str, Any]]:
    """Events the watcher made and dead letters it kept in each slice of the last `minutes`."""
    if not dead_letters.watcher_exists(conn, watcher_id):
        raise NotFound(f"no watcher {watcher_id}", "list watchers with GET /api/v1/watchers")
    now = utcnow()
    return stats.watcher_activity(conn, watcher_id, now - timedelta(minutes=minutes), now, buckets)
