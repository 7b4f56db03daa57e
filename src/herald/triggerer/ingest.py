"""The one transaction of the delivery contract: events, queue entries, dead letters, counters."""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Insert, insert, update
from sqlalchemy.dialects import postgresql, sqlite

from herald.store import tables as t
from herald.store.types import utcnow
from herald.triggers.base import Message


@dataclass
class Outcome:
    """What one watcher made of one message."""

    watcher_id: int
    asset_id: int
    message: Message
    kind: str  # "event", "skip" or "dead"
    payload: Any = None
    encoding: str | None = None
    error: str | None = None


@dataclass
class IngestResult:
    """Counts of one committed batch."""

    events: int = 0
    deduped: int = 0
    skipped: int = 0
    dead: int = 0


def upsert_ignore(conn: Connection, table: Any) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING for the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise NotImplementedError(f"unsupported database {conn.dialect.name}")


def message_extra(message: Message) -> dict[str, Any]:
    """`extra["message"]`: where the message came from, for every event and dead letter."""
    meta = dict(message.metadata)
    if message.headers:
        meta["headers"] = message.headers
    if message.key is not None:
        raw = message.key
        if isinstance(raw, bytes):
            try:
                meta["key"] = raw.decode("utf-8")
            except UnicodeDecodeError:
                meta["key"] = base64.b64encode(raw).decode("ascii")
        else:
            meta["key"] = raw
    meta["dedupe_key"] = message.dedupe_key
    meta["received_at"] = message.received_at.isoformat()
    return meta


def insert_events(
    conn: Connection,
    rows: Sequence[dict[str, Any]],
    consumers: dict[int, list[str]],
    now: datetime,
) -> list[tuple[int, int, str]]:
    """Insert events, skipping duplicates, and queue each new one for its consumer DAGs.

    `rows` carry `asset_id`, `source`, `dedupe_key`, `extra`, `timestamp`.
    Returns `(event_id, asset_id, source)` of the events that were new.
    """
    if not rows:
        return []
    created = conn.execute(
        upsert_ignore(conn, t.asset_event).returning(
            t.asset_event.c.id, t.asset_event.c.asset_id, t.asset_event.c.source
        ),
        list(rows),
    ).all()
    new = [(int(r[0]), int(r[1]), str(r[2])) for r in created]
    queue = [
        {"dag_id": dag_id, "asset_id": asset_id, "event_id": event_id, "queued_at": now}
        for event_id, asset_id, _source in new
        for dag_id in consumers.get(asset_id, ())
    ]
    if queue:
        conn.execute(insert(t.event_queue), queue)
    return new


def ingest(
    conn: Connection,
    outcomes: Sequence[Outcome],
    consumers: dict[int, list[str]],
    sources: dict[int, str],
) -> IngestResult:
    """Store one received batch inside the caller's transaction.

    `sources` names each watcher's trigger (secrets masked) for dead letters.
    """
    now = utcnow()
    result = IngestResult()
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    event_rows: list[dict[str, Any]] = []
    dead_rows: list[dict[str, Any]] = []
    for o in outcomes:
        c = counts[o.watcher_id]
        c["received"] += 1
        if o.kind == "event":
            extra: dict[str, Any] = {"payload": o.payload, "message": message_extra(o.message)}
            if o.encoding:
                extra["payload_encoding"] = o.encoding
            event_rows.append(
                {
                    "asset_id": o.asset_id,
                    "source": f"watcher:{o.watcher_id}",
                    "dedupe_key": o.message.dedupe_key,
                    "extra": extra,
                    "timestamp": now,
                }
            )
        elif o.kind == "skip":
            c["skipped"] += 1
        else:
            c["dead_lettered"] += 1
            dead_rows.append(
                {
                    "watcher_id": o.watcher_id,
                    "source": sources.get(o.watcher_id, ""),
                    "dedupe_key": o.message.dedupe_key,
                    "body": o.message.body,
                    "headers": o.message.headers,
                    "message": message_extra(o.message),
                    "error": o.error or "unknown error",
                    "created_at": now,
                }
            )
    new = insert_events(conn, event_rows, consumers, now)
    result.events = len(new)
    result.deduped = len(event_rows) - len(new)
    offered: dict[int, int] = defaultdict(int)
    for row in event_rows:
        offered[int(str(row["source"]).split(":", 1)[1])] += 1
    created: dict[int, int] = defaultdict(int)
    for _eid, _aid, source in new:
        created[int(source.split(":", 1)[1])] += 1
    if dead_rows:
        conn.execute(upsert_ignore(conn, t.dead_letter), dead_rows)
    result.dead = len(dead_rows)
    result.skipped = sum(c["skipped"] for c in counts.values())
    for wid, c in counts.items():
        events = created.get(wid, 0)
        evented = offered.get(wid, 0)
        conn.execute(
            update(t.watcher)
            .where(t.watcher.c.id == wid)
            .values(
                received=t.watcher.c.received + c["received"],
                events=t.watcher.c.events + events,
                deduped=t.watcher.c.deduped + (evented - events),
                skipped=t.watcher.c.skipped + c["skipped"],
                dead_lettered=t.watcher.c.dead_lettered + c["dead_lettered"],
                last_message_at=now,
            )
        )
    return result
