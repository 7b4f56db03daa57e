"""Replaying dead letters: a fixed DAG file's trigger gets the stored message again.

The API, the UI or `herald dead-letters replay ID` mark a dead letter
`replay_requested_at`; the triggerer that holds the watcher's lease runs the raw
body through the watcher's trigger as it is now (its `apply_function` and
filter), stores the event in the same transaction that marks the dead letter
replayed, and wakes the scheduler. A message that fails again keeps its dead
letter, with the new error.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select, update

from herald import notify
from herald.store import tables as t
from herald.store.sync import WatcherSpec
from herald.store.types import utcnow
from herald.triggerer.ingest import insert_events, message_extra
from herald.triggers.base import Message

REPLAY = "replay"


def request_replay(engine: Engine, dead_letter_id: int) -> str | None:
    """Mark a dead letter for replay; returns why it cannot be, or None."""
    d = t.dead_letter
    with engine.begin() as conn:
        row = conn.execute(select(d.c.watcher_id, d.c.replayed_at).where(d.c.id == dead_letter_id)).first()
        if row is None:
            return f"no dead letter {dead_letter_id}"
        if row.replayed_at is not None:
            return f"dead letter {dead_letter_id} was already replayed"
        if row.watcher_id is None:
            return f"dead letter {dead_letter_id} has no watcher to replay it through"
        conn.execute(update(d).where(d.c.id == dead_letter_id).values(replay_requested_at=utcnow()))
        notify.notify_in(conn, REPLAY)
    return None


def replay_requested(engine: Engine, specs: dict[int, WatcherSpec], consumers: dict[int, list[str]]) -> int:
    """Replay the requested dead letters of the watchers in `specs`; returns how many became events."""
    d = t.dead_letter
    with engine.connect() as conn:
        rows = conn.execute(
            select(d.c.id, d.c.watcher_id, d.c.body, d.c.headers, d.c.message, d.c.dedupe_key)
            .where(d.c.replay_requested_at.is_not(None), d.c.replayed_at.is_(None), d.c.watcher_id.in_(list(specs)))
            .order_by(d.c.id)
            .limit(500)
        ).all()
    created = 0
    for row in rows:
        spec = specs[int(row.watcher_id)]
        meta: dict[str, Any] = {
            k: v for k, v in dict(row.message or {}).items() if k not in ("dedupe_key", "received_at", "headers", "key")
        }
        meta["replayed_from_dead_letter"] = int(row.id)
        message = Message(
            body=bytes(row.body),
            dedupe_key=row.dedupe_key or f"dead_letter:{row.id}",
            headers=dict(row.headers or {}),
            metadata=meta,
        )
        now = utcnow()
        try:
            keep, payload, encoding = spec.watcher.trigger.to_payload(message)
            error = None
        except Exception as exc:
            keep, payload, encoding, error = False, None, None, f"{type(exc).__name__}: {exc}"
        with engine.begin() as conn:
            if error is not None:
                conn.execute(update(d).where(d.c.id == row.id).values(error=error, replay_requested_at=None))
                continue
            if keep:
                extra: dict[str, Any] = {"payload": payload, "message": message_extra(message)}
                if encoding:
                    extra["payload_encoding"] = encoding
                event = {
                    "asset_id": spec.asset_id,
                    "source": f"watcher:{spec.id}",
                    "dedupe_key": message.dedupe_key,
                    "extra": extra,
                    "timestamp": now,
                }
                created += len(insert_events(conn, [event], consumers, now))
                notify.notify_in(conn, notify.SCHEDULER)
            conn.execute(update(d).where(d.c.id == row.id).values(replayed_at=now, replay_requested_at=None))
    return created
