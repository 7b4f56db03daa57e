"""Read-only figures for the UI's charts: a DAG's runs over time, its durations and
latencies, its grid of runs by tasks, and a watcher's traffic over time.

Everything is computed from rows Herald keeps anyway (runs, tries, events, dead
letters); nothing here writes. Each read is bounded (a window of time or a number
of runs) so that a chart never scans a table's whole history.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from herald.store import tables as t

#: at most this many runs are read for one DAG's figures (the newest of the window)
MAX_RUNS = 20_000
#: a mapped task shows its most telling expansion: the first of these states found
STATE_ORDER = (
    "failed",
    "upstream_failed",
    "running",
    "up_for_retry",
    "queued",
    "scheduled",
    "none",
    "success",
    "skipped",
    "removed",
)


def _slice(stamp: datetime, since: datetime, width: float, buckets: int) -> int:
    return min(max(int((stamp - since).total_seconds() / width), 0), buckets - 1)


def percentiles(values: list[float], points: tuple[int, ...] = (50, 95, 99)) -> dict[str, float | None]:
    """Nearest-rank percentiles of `values` (None when there are none), plus the count."""
    ordered = sorted(values)
    out: dict[str, float | None] = {"count": float(len(ordered))}
    for p in points:
        out[f"p{p}"] = ordered[min(len(ordered) - 1, max(0, -(-p * len(ordered) // 100) - 1))] if ordered else None
    return out


def dag_activity(conn: Connection, dag_id: str, since: datetime, until: datetime, buckets: int) -> dict[str, Any]:
    """Runs of `dag_id` queued in each of `buckets` slices of [since, until), by state;
    the durations of the runs that ended; and the latency from a run's first event to
    its first task's start (event-triggered runs only), in seconds."""
    dr, dre, ae, ti = t.dag_run, t.dag_run_event, t.asset_event, t.task_instance
    width = (until - since).total_seconds() / buckets
    runs = conn.execute(
        select(dr.c.id, dr.c.state, dr.c.queued_at, dr.c.started_at, dr.c.ended_at)
        .where(dr.c.dag_id == dag_id, dr.c.queued_at >= since, dr.c.queued_at < until)
        .order_by(dr.c.id.desc())
        .limit(MAX_RUNS)
    ).all()
    slices: list[Counter[str]] = [Counter() for _ in range(buckets)]
    durations: list[float] = []
    for r in runs:
        slices[_slice(r.queued_at, since, width, buckets)][r.state] += 1
        if r.started_at is not None and r.ended_at is not None:
            durations.append((r.ended_at - r.started_at).total_seconds())
    latencies: list[float] = []
    if runs:
        oldest = runs[-1].id
        first_event = (
            select(dre.c.run_pk, func.min(ae.c.timestamp).label("at"))
            .join(ae, ae.c.id == dre.c.event_id)
            .join(dr, dr.c.id == dre.c.run_pk)
            .where(dr.c.dag_id == dag_id, dr.c.id >= oldest)
            .group_by(dre.c.run_pk)
            .subquery()
        )
        first_task = (
            select(ti.c.run_pk, func.min(ti.c.started_at).label("at"))
            .join(dr, dr.c.id == ti.c.run_pk)
            .where(dr.c.dag_id == dag_id, dr.c.id >= oldest, ti.c.started_at.is_not(None))
            .group_by(ti.c.run_pk)
            .subquery()
        )
        pairs = conn.execute(
            select(first_event.c.at, first_task.c.at).join(first_task, first_task.c.run_pk == first_event.c.run_pk)
        ).all()
        latencies = [max(0.0, (started - event).total_seconds()) for event, started in pairs]
    return {
        "runs": [
            {"start": (since + (until - since) * i / buckets).isoformat(), "states": dict(c)}
            for i, c in enumerate(slices)
        ],
        "duration_seconds": percentiles(durations),
        "event_to_task_seconds": percentiles(latencies),
    }


def dag_grid(conn: Connection, dag_id: str, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` runs of `dag_id`, oldest first, each with one state per task id
    (a mapped task: its most telling expansion, and how many there are)."""
    dr, ti = t.dag_run, t.task_instance
    runs = conn.execute(
        select(dr.c.id, dr.c.run_id, dr.c.state, dr.c.queued_at)
        .where(dr.c.dag_id == dag_id)
        .order_by(dr.c.id.desc())
        .limit(limit)
    ).all()
    if not runs:
        return []
    tasks: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for row in conn.execute(select(ti.c.run_pk, ti.c.task_id, ti.c.state).where(ti.c.run_pk.in_([r.id for r in runs]))):
        tasks[row.run_pk][row.task_id].append(row.state)
    rank = {s: i for i, s in enumerate(STATE_ORDER)}
    return [
        {
            "run_id": r.run_id,
            "state": r.state,
            "queued_at": r.queued_at.isoformat(),
            "tasks": {
                task: {"state": min(states, key=lambda s: rank.get(s, len(rank))), "count": len(states)}
                for task, states in tasks[r.id].items()
            },
        }
        for r in reversed(runs)
    ]


def watcher_activity(
    conn: Connection, watcher_id: int, since: datetime, until: datetime, buckets: int
) -> list[dict[str, Any]]:
    """Events made and dead letters kept by watcher `watcher_id` in each of `buckets`
    slices of [since, until)."""
    ae, dl = t.asset_event, t.dead_letter
    width = (until - since).total_seconds() / buckets
    events = [0] * buckets
    dead = [0] * buckets
    for stamp in conn.execute(
        select(ae.c.timestamp).where(
            ae.c.source == f"watcher:{watcher_id}", ae.c.timestamp >= since, ae.c.timestamp < until
        )
    ).scalars():
        events[_slice(stamp, since, width, buckets)] += 1
    for stamp in conn.execute(
        select(dl.c.created_at).where(dl.c.watcher_id == watcher_id, dl.c.created_at >= since, dl.c.created_at < until)
    ).scalars():
        dead[_slice(stamp, since, width, buckets)] += 1
    return [
        {"start": (since + (until - since) * i / buckets).isoformat(), "events": e, "dead_letters": d}
        for i, (e, d) in enumerate(zip(events, dead, strict=True))
    ]
