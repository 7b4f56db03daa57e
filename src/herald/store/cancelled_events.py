"""Events a `cancel_on=` event consumed before any run took them.

A DAG that gathers events into runs (an `EventBatch`, an asset condition waiting
for more) keeps them in its queue until a run takes them. An event of a
`cancel_on=` asset cancels its key's queued and running runs made by older
events (`store.flow`), and also the older events of its key still gathering:
they leave the queue here, in the scheduler's transaction, recorded with the
event that cancelled them (`cancelled_event`), so no run is ever made from them
and the decision survives a kill -9. They are listed with the events a window
or an absence holds (`store.held.held_events`), and go with their event
(retention, ON DELETE CASCADE).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, func, insert, select

from herald.store import tables as t

__all__ = ["CANCELLED", "Cancelled", "counts", "listed", "record"]

#: the rule a cancelled event's metrics count under (`herald_events_held`)
CANCELLED = "cancelled"

ce = t.cancelled_event
_CHUNK = 500


class Cancelled(NamedTuple):
    """One queued event a `cancel_on=` event consumed: the queued event, its key, and the canceller."""

    event_id: int
    run_key: str | None
    queued_at: datetime
    cancelled_by_event: int


def record(conn: Connection, dag_id: str, cancelled: Sequence[Cancelled], now: datetime) -> None:
    """These events of `dag_id` were consumed at `now` without a run (their queue rows are
    deleted by the caller, in the same transaction)."""
    rows = [
        {
            "dag_id": dag_id,
            "event_id": c.event_id,
            "run_key": c.run_key,
            "queued_at": c.queued_at,
            "cancelled_by_event": c.cancelled_by_event,
            "cancelled_at": now,
        }
        for c in cancelled
    ]
    for i in range(0, len(rows), _CHUNK):
        conn.execute(insert(ce), rows[i : i + _CHUNK])


def listed(conn: Connection, limit: int, dag_id: str | None = None) -> list[dict[str, Any]]:
    """The newest cancelled events (of `dag_id`), newest first, as `store.held.held_events` lists
    them: held_by "cancelled by event N", since (queued), held_until (cancelled)."""
    ae, a = t.asset_event, t.asset
    q = (
        select(ce.c.dag_id, ce.c.event_id, ce.c.run_key, ce.c.queued_at, ce.c.cancelled_by_event, ce.c.cancelled_at)
        .add_columns(a.c.name)
        .join(ae, ae.c.id == ce.c.event_id)
        .join(a, a.c.id == ae.c.asset_id)
        .order_by(ce.c.id.desc())
        .limit(limit)
    )
    if dag_id is not None:
        q = q.where(ce.c.dag_id == dag_id)
    return [
        {
            "dag_id": row.dag_id,
            "event_id": int(row.event_id),
            "asset": row.name,
            "key": row.run_key,
            "held_by": f"cancelled by event {row.cancelled_by_event}",
            "since": row.queued_at,
            "held_until": row.cancelled_at,
            "detail": f"event {row.cancelled_by_event} (cancel_on) cancelled it before a run took it: no run"
            + (f" (key {row.run_key!r})" if row.run_key is not None else ""),
        }
        for row in conn.execute(q)
    ]


def counts(conn: Connection) -> dict[str, int]:
    """How many events a `cancel_on=` event consumed, per DAG (for metrics)."""
    q = select(ce.c.dag_id, func.count()).group_by(ce.c.dag_id)
    return {str(d): int(n) for d, n in conn.execute(q)}
