"""Events that are no run yet because a window or an absence watch holds them, or never will be
because a `cancel_on=` event consumed them (for listings).

Key, throttle and debounce holds are on runs (`dag_run.held_by`). A window
(`(a & b).within(...)`) and an absence (`a.missing_for(...)`) hold events before
any run exists: a window's events wait in the DAG's queue for their partners, and
an absence keeps each key's last event (`asset_key_seen`) until the key has been
silent long enough. This module reads both back, with the rule that holds each
event ("window" or "missing_for") and until when, from the database alone: the
DAG's stored schedule says which rule and how long (`DAG.schedule_description`).
The events a `cancel_on=` event took from the queue before any run did are listed
with them, held by "cancelled by event N" (`store.cancelled_events`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from herald.sdk.asset_windows import key_of
from herald.sdk.waits import compile_expression
from herald.store import cancelled_events
from herald.store import tables as t

__all__ = ["MISSING_FOR", "WINDOW", "held_events"]

#: `held_by` of an event waiting in a window for its partners
WINDOW = "window"
#: `held_by` of a key's last event while an absence watches the key
MISSING_FOR = "missing_for"


def _timed_dags(conn: Connection, dag_id: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The active DAGs scheduled on a window and on an absence: dag_id -> the rule's description."""
    d = t.dag
    q = select(d.c.dag_id, d.c.schedule).where(d.c.is_active)
    if dag_id is not None:
        q = q.where(d.c.dag_id == dag_id)
    windows: dict[str, Any] = {}
    absences: dict[str, Any] = {}
    for row in conn.execute(q):
        schedule = row.schedule
        if isinstance(schedule, dict) and isinstance(schedule.get("within"), dict):
            windows[row.dag_id] = schedule["within"]
        elif isinstance(schedule, dict) and isinstance(schedule.get("missing_for"), dict):
            absences[row.dag_id] = schedule["missing_for"]
    return windows, absences


def _compiled(expression: Any) -> Any:
    try:
        return compile_expression(expression, "key") if isinstance(expression, str) else None
    except ValueError:
        return None


def _window_events(conn: Connection, windows: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    eq, ae, a = t.event_queue, t.asset_event, t.asset
    rows = conn.execute(
        select(eq.c.dag_id, eq.c.event_id, eq.c.queued_at, a.c.name, ae.c.extra)
        .join(a, a.c.id == eq.c.asset_id)
        .join(ae, ae.c.id == eq.c.event_id)
        .where(eq.c.dag_id.in_(sorted(windows)))
        .order_by(eq.c.id.desc())
        .limit(limit)
    ).all()
    compiled = {dag_id: _compiled(w.get("key")) for dag_id, w in windows.items()}
    found = []
    for row in rows:
        window = windows[row.dag_id]
        seconds = float(window.get("seconds") or 0)
        key = key_of(compiled[row.dag_id], row.extra) if window.get("key") else None
        found.append(
            {
                "dag_id": row.dag_id,
                "event_id": int(row.event_id),
                "asset": row.name,
                "key": key,
                "held_by": WINDOW,
                "since": row.queued_at,
                "held_until": row.queued_at + timedelta(seconds=seconds),
                "detail": f"waits up to {seconds:g}s for an event of each other asset of its window"
                + (f" with key {key!r}" if key is not None else ""),
            }
        )
    return found


def _absence_events(conn: Connection, absences: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    ks = t.asset_key_seen
    rows = conn.execute(
        select(ks.c.dag_id, ks.c.key, ks.c.last_seen, ks.c.last_event_id)
        .where(ks.c.dag_id.in_(sorted(absences)), ks.c.alerted.is_(False))
        .order_by(ks.c.last_seen.desc())
        .limit(limit)
    ).all()
    found = []
    for row in rows:
        absence = absences[row.dag_id]
        seconds = float(absence.get("seconds") or 0)
        found.append(
            {
                "dag_id": row.dag_id,
                "event_id": int(row.last_event_id),
                "asset": absence.get("asset"),
                "key": row.key if absence.get("key") else None,
                "held_by": MISSING_FOR,
                "since": row.last_seen,
                "held_until": row.last_seen + timedelta(seconds=seconds),
                "detail": f"the key's last event: a run if the key stays silent {seconds:g}s",
            }
        )
    return found


def held_events(conn: Connection, limit: int, dag_id: str | None = None, *, offset: int = 0) -> list[dict[str, Any]]:
    """Events held by a window or an absence watch, or consumed by a `cancel_on=` event before a
    run took them, newest first: dag_id, event_id, asset, key, held_by ("window", "missing_for"
    or "cancelled by event N"), since (queued, or last seen), held_until (the window closes, the
    silence makes a run, or when the event was cancelled), detail."""
    windows, absences = _timed_dags(conn, dag_id)
    wanted = limit + offset
    found: list[dict[str, Any]] = []
    if windows:
        found += _window_events(conn, windows, wanted)
    if absences:
        found += _absence_events(conn, absences, wanted)
    found += cancelled_events.listed(conn, wanted, dag_id)
    found.sort(key=lambda r: (r["since"], r["event_id"]), reverse=True)
    return [
        {**r, "since": _iso(r["since"]), "held_until": _iso(r["held_until"])} for r in found[offset : offset + limit]
    ]


def _iso(value: datetime) -> str:
    return value.isoformat()


def held_counts(conn: Connection) -> dict[tuple[str, str], int]:
    """How many events each window or absence DAG holds, and how many a `cancel_on=` event
    consumed: (dag_id, held_by) -> count, held_by "window", "missing_for" or "cancelled" (for metrics)."""
    windows, absences = _timed_dags(conn, None)
    counts: dict[tuple[str, str], int] = {}
    if windows:
        eq = t.event_queue
        q = select(eq.c.dag_id, func.count()).where(eq.c.dag_id.in_(sorted(windows))).group_by(eq.c.dag_id)
        counts.update({(str(d), WINDOW): int(n) for d, n in conn.execute(q)})
    if absences:
        ks = t.asset_key_seen
        q = (
            select(ks.c.dag_id, func.count())
            .where(ks.c.dag_id.in_(sorted(absences)), ks.c.alerted.is_(False))
            .group_by(ks.c.dag_id)
        )
        counts.update({(str(d), MISSING_FOR): int(n) for d, n in conn.execute(q)})
    counts.update({(d, cancelled_events.CANCELLED): n for d, n in cancelled_events.counts(conn).items()})
    return counts
