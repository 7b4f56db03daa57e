"""A watcher's health over time (`watcher_sample`): state, lag, messages received, error.

The triggerer samples the watchers whose lease it holds every few seconds, all of
them in one INSERT ... SELECT from `watcher` (one round trip a round, whatever the
number of watchers), and prunes what is older than a day. Retention
(`store/retention.py`) deletes them sooner when HERALD_RETENTION is shorter.
The watcher page draws its lag from them, and lists the errors with their times.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, String, and_, case, delete, insert, literal, select

from herald.store import tables as t
from herald.store.states import WatcherState
from herald.store.types import UtcDateTime

ws = t.watcher_sample
w = t.watcher
#: at most this many samples are read for one watcher's history (a day at one per 15 s is 5,760)
MAX_SAMPLES = 6000
#: an error is a sample's only while its watcher is not consuming: `last_error` stays on a
#: running watcher until its next message, and a quiet queue is not an error
_TROUBLED = (WatcherState.RECONNECTING.value, WatcherState.FAILED.value)


def take(engine: Engine, owner: str, now: datetime) -> int:
    """Sample every active watcher whose lease `owner` holds, in one statement; returns how many."""
    sampled = select(
        w.c.id,
        literal(now, UtcDateTime()),
        w.c.state,
        w.c.lag,
        w.c.received,
        case((w.c.state.in_(_TROUBLED), w.c.last_error), else_=None),
    ).where(w.c.is_active, w.c.lease_owner == literal(owner, String(200)))
    with engine.begin() as conn:
        columns = ["watcher_id", "sampled_at", "state", "lag", "received", "error"]
        return len(conn.execute(insert(ws).from_select(columns, sampled).returning(ws.c.id)).all())


def prune(engine: Engine, before: datetime) -> int:
    """Delete the samples taken before `before` (the triggerer's own cap); returns how many."""
    with engine.begin() as conn:
        return int(conn.execute(delete(ws).where(ws.c.sampled_at < before)).rowcount)


def history(conn: Connection, watcher_id: int, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """The samples of one watcher in [since, until), oldest first (the newest MAX_SAMPLES at most)."""
    rows = conn.execute(
        select(ws.c.sampled_at, ws.c.state, ws.c.lag, ws.c.received, ws.c.error)
        .where(and_(ws.c.watcher_id == watcher_id, ws.c.sampled_at >= since, ws.c.sampled_at < until))
        .order_by(ws.c.sampled_at.desc(), ws.c.id.desc())
        .limit(MAX_SAMPLES)
    ).all()
    return [
        {"at": r.sampled_at, "state": r.state, "lag": r.lag, "received": int(r.received), "error": r.error}
        for r in reversed(rows)
    ]


def error_spells(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The errors of a watcher's samples as spells: one per run of samples with the same error,
    with when it was first and last seen and how many samples showed it; newest first."""
    spells: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for s in samples:
        if s["error"] is None:
            current = None
            continue
        if current is not None and current["error"] == s["error"]:
            current["last_seen"] = s["at"]
            current["samples"] += 1
            continue
        current = {"error": s["error"], "state": s["state"], "first_seen": s["at"], "last_seen": s["at"], "samples": 1}
        spells.append(current)
    return list(reversed(spells))
