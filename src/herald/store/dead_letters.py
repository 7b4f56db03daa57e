"""Dead letters as the faces change them: replay requests, one at a time or all of a watcher.

The triggerer writes dead letters and replays the requested ones
(`herald.triggerer.replay`); a user only asks for a replay, by setting
`replay_requested_at`. Functions take the caller's connection and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, false, func, select, update

from herald.store import tables as t
from herald.store.types import utcnow


@dataclass(frozen=True)
class ReplayState:
    """What decides whether a dead letter can be replayed."""

    id: int
    watcher_id: int | None
    replayed_at: datetime | None
    replay_requested_at: datetime | None
    #: only the head of the body was stored: replaying it would make an event of part of a message
    body_truncated: bool = False


def replay_state(conn: Connection, dead_letter_id: int) -> ReplayState | None:
    """The dead letter's watcher and replay times, or None when there is no such dead letter."""
    d = t.dead_letter
    row = conn.execute(
        select(d.c.id, d.c.watcher_id, d.c.replayed_at, d.c.replay_requested_at, d.c.body_truncated).where(
            d.c.id == dead_letter_id
        )
    ).first()
    if row is None:
        return None
    watcher = None if row.watcher_id is None else int(row.watcher_id)
    return ReplayState(int(row.id), watcher, row.replayed_at, row.replay_requested_at, bool(row.body_truncated))


def request_replay(conn: Connection, dead_letter_id: int) -> None:
    """Mark one dead letter for the triggerer holding its watcher to replay."""
    d = t.dead_letter
    conn.execute(update(d).where(d.c.id == dead_letter_id).values(replay_requested_at=utcnow()))


def request_replay_of_watcher(conn: Connection, watcher_id: int) -> int:
    """Mark every dead letter of a watcher not replayed yet (and stored whole); returns how many were marked."""
    return request_replay_matching(conn, watcher_id=watcher_id)


def request_replay_matching(conn: Connection, *, watcher_id: int | None = None, error: str | None = None) -> int:
    """Mark the dead letters not replayed yet (and stored whole) of a watcher and/or whose
    reason contains `error` (case-insensitive); returns how many were marked."""
    d = t.dead_letter
    query = update(d).where(
        d.c.replayed_at.is_(None),
        d.c.replay_requested_at.is_(None),
        d.c.body_truncated.is_(false()),  # part of a message cannot be replayed
        d.c.watcher_id.is_not(None),  # a webhook's dead letter has no trigger to replay it through
    )
    if watcher_id is not None:
        query = query.where(d.c.watcher_id == watcher_id)
    if error:
        query = query.where(func.lower(d.c.error).contains(error.lower(), autoescape=True))
    return int(conn.execute(query.values(replay_requested_at=utcnow())).rowcount)


def watcher_exists(conn: Connection, watcher_id: int) -> bool:
    """True when there is a watcher with this id."""
    return conn.execute(select(t.watcher.c.id).where(t.watcher.c.id == watcher_id)).first() is not None
