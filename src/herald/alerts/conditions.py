"""The alert conditions: what holds now, read from the database.

Each condition has a key (one per thing watched: "watcher:3:down",
"dag:etl:failing"), a summary a person reads, details for a machine, and how
long it must hold before it fires.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from herald.store import alerts as store_alerts
from herald.store.states import RunState, WatcherState


@dataclass(frozen=True)
class Thresholds:
    """When a condition holds (from the settings)."""

    watcher_after: float = 60.0
    watcher_lag: int | None = 10_000
    latency_seconds: float | None = None
    latency_window: float = 300.0
    dag_failures: bool = True


@dataclass(frozen=True)
class Condition:
    """Something wrong now."""

    key: str
    kind: str
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)
    #: seconds it must hold before it fires
    after: float = 0.0


def p95(values: list[float]) -> float:
    """The 95th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def current(conn: Connection, thresholds: Thresholds, now: datetime) -> list[Condition]:
    """Every condition that holds now."""
    found: list[Condition] = []
    for w in store_alerts.watchers(conn):
        if w.state == WatcherState.PAUSED:
            continue  # a person paused it: not down
        where = f"watcher {w.name!r} of asset {w.asset!r}"
        detail = {"watcher_id": int(w.id), "watcher": w.name, "asset": w.asset, "state": w.state}
        lease_gone = w.lease_expires_at is not None and w.lease_expires_at < now
        if w.state != WatcherState.RUNNING or lease_gone:
            state = "running, but its triggerer stopped renewing its lease" if lease_gone else w.state
            error = f": {w.last_error}" if w.last_error else ""
            found.append(
                Condition(
                    f"watcher:{w.id}:down",
                    "watcher_down",
                    f"{where} is {state}{error}",
                    {**detail, "last_error": w.last_error, "lease_owner": w.lease_owner},
                    thresholds.watcher_after,
                )
            )
        if thresholds.watcher_lag is not None and w.lag is not None and w.lag > thresholds.watcher_lag:
            found.append(
                Condition(
                    f"watcher:{w.id}:lag",
                    "watcher_lag",
                    f"{where} is {w.lag} messages behind (over {thresholds.watcher_lag})",
                    {**detail, "lag": int(w.lag), "threshold": thresholds.watcher_lag},
                    thresholds.watcher_after,
                )
            )
    if thresholds.dag_failures:
        failed = [r for r in store_alerts.latest_ends(conn) if r.state == RunState.FAILED]
        tasks = store_alerts.failed_tasks(conn, [int(r.id) for r in failed])
        for r in failed:
            broken = tasks.get(int(r.id), [])
            why = "; ".join(f"{task}: {error or 'failed'}" for task, error in broken[:3])
            found.append(
                Condition(
                    f"dag:{r.dag_id}:failing",
                    "dag_failing",
                    f"DAG {r.dag_id!r}: run {r.run_id} failed" + (f" ({why})" if why else ""),
                    {
                        "dag_id": r.dag_id,
                        "run_id": r.run_id,
                        "failed_tasks": [task for task, _ in broken],
                        "ended_at": r.ended_at.isoformat() if r.ended_at else None,
                    },
                )
            )
    if thresholds.latency_seconds is not None:
        for dag_id, values in store_alerts.latencies(conn, now, thresholds.latency_window).items():
            worst = p95(values)
            if worst > thresholds.latency_seconds:
                found.append(
                    Condition(
                        f"dag:{dag_id}:latency",
                        "latency",
                        f"DAG {dag_id!r}: event-to-task latency p95 {worst:.1f} s over the last "
                        f"{thresholds.latency_window:g} s (threshold {thresholds.latency_seconds:g} s)",
                        {
                            "dag_id": dag_id,
                            "p95_seconds": round(worst, 3),
                            "runs": len(values),
                            "threshold_seconds": thresholds.latency_seconds,
                        },
                    )
                )
    return found
