"""Asset events: the one transaction of the delivery contract, and the inserts every source shares.

`insert_events` stores events under their unique `(source, dedupe_key)`,
skipping duplicates, and queues each new one for the DAGs scheduled on its
asset (`event_queue`). `record_batch` is what the triggerer commits for one
received batch: events, dead letters (their INSERTs live here, since they are
written in the same transaction) and the watchers' counters. `replay_dead_letter`
stores the event a replayed dead letter became and marks the letter replayed.

Events made by watchers are built once, by `watcher_event`, whether they come
from a broker or from a replayed dead letter.

What would violate this: an INSERT into `asset_event`, `event_queue` or
`dead_letter` anywhere else in the triggerer.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Insert, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from herald.sdk.triggers import Message
from herald.store import tables as t
from herald.store.sql import ORDINAL, arrays, insert_rows, per_dialect, unnested
from herald.store.storable import DEFAULT_MAX_DEAD_LETTER_BODY, body_head
from herald.store.types import utcnow
from herald.store.watchers import WatcherCounts, add_counts


def upsert_ignore(conn: Connection, table: Any) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING for the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise NotImplementedError(f"unsupported database {conn.dialect.name}")


def watcher_source(watcher_id: int) -> str:
    """`AssetEvent.source` of an event made by a watcher: `watcher:ID` (the watcher's row id)."""
    return f"watcher:{watcher_id}"


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
    meta["received_at"] = _iso(message.received_at)
    return meta


@functools.lru_cache(maxsize=16)
def _iso(at: datetime) -> str:
    """`at.isoformat()`, remembered: a batch's messages share the time they were received."""
    return at.isoformat()


@dataclass(frozen=True)
class NewEvent:
    """An asset event about to be inserted."""

    asset_id: int
    source: str
    dedupe_key: str | None
    extra: dict[str, Any]
    timestamp: datetime

    def to_row(self) -> dict[str, Any]:
        """The `asset_event` row."""
        return {
            "asset_id": self.asset_id,
            "source": self.source,
            "dedupe_key": self.dedupe_key,
            "extra": self.extra,
            "timestamp": self.timestamp,
        }


def watcher_event(
    watcher_id: int, asset_id: int, message: Message, payload: Any, encoding: str | None, now: datetime
) -> NewEvent:
    """The event a watcher makes of a message: the one builder, for delivery and replay alike."""
    extra: dict[str, Any] = {"payload": payload, "message": message_extra(message)}
    if encoding:
        extra["payload_encoding"] = encoding
    return NewEvent(asset_id, watcher_source(watcher_id), message.dedupe_key, extra, now)


def insert_events(
    conn: Connection,
    rows: Sequence[NewEvent | Mapping[str, Any]],
    consumers: Mapping[int, Sequence[str]],
    now: datetime,
) -> list[tuple[int, int, str]]:
    """Insert events, skipping duplicates, and queue each new one for its consumer DAGs.

    `rows` are `NewEvent`s or rows carrying `asset_id`, `source`, `dedupe_key`,
    `extra`, `timestamp`. Returns `(event_id, asset_id, source)` of the events that were new.
    """
    if not rows:
        return []
    postgres = conn.dialect.name == "postgresql"
    created: Sequence[Sequence[Any]]
    if postgres:
        values = [r.to_row() if isinstance(r, NewEvent) else dict(r) for r in rows]
        # one statement text for any batch (a multi-row VALUES is a new text for each size)
        created = conn.execute(_insert_events_pg(conn), arrays(t.asset_event, values, _EVENT_COLUMNS)).all()
    elif all(isinstance(r, NewEvent) for r in rows):
        # a watcher's batch: the driver's multi-row INSERT, each value converted once
        created = insert_rows(
            conn,
            t.asset_event,
            _WATCHER_EVENT_COLUMNS,
            ((r.asset_id, r.source, r.dedupe_key, r.extra, r.timestamp) for r in rows if isinstance(r, NewEvent)),
            skip_conflicts=True,
            returning=("id", "asset_id", "source"),
        )
    else:  # rows that may carry more columns (a task's events: source_dag_id...)
        created = conn.execute(
            upsert_ignore(conn, t.asset_event).returning(
                t.asset_event.c.id, t.asset_event.c.asset_id, t.asset_event.c.source
            ),
            [r.to_row() if isinstance(r, NewEvent) else dict(r) for r in rows],
        ).all()
    new = sorted((int(r[0]), int(r[1]), str(r[2])) for r in created)
    if postgres:
        queue = [
            {"dag_id": dag_id, "asset_id": asset_id, "event_id": event_id, "queued_at": now}
            for event_id, asset_id, _source in new
            for dag_id in consumers.get(asset_id, ())
        ]
        if queue:
            conn.execute(_queue_events_pg(conn), arrays(t.event_queue, queue, _QUEUE_COLUMNS))
    else:
        insert_rows(
            conn,
            t.event_queue,
            _QUEUE_COLUMNS,
            (
                (dag_id, asset_id, event_id, now)
                for event_id, asset_id, _source in new
                for dag_id in consumers.get(asset_id, ())
            ),
        )
    return new


_EVENT_COLUMNS = (
    "asset_id",
    "source",
    "dedupe_key",
    "extra",
    "timestamp",
    # a task's outlet event names its try (Airflow's AssetEvent.source_*)
    "source_dag_id",
    "source_task_id",
    "source_run_id",
    "source_map_index",
)
#: the columns of an event a watcher (or a replay) makes: it names no task try
_WATCHER_EVENT_COLUMNS = _EVENT_COLUMNS[:5]
_QUEUE_COLUMNS = ("dag_id", "asset_id", "event_id", "queued_at")
_EVENT_BACK = ("id", "asset_id", "source")


@per_dialect
def _insert_events_pg(dialect: str) -> Any:
    ae = t.asset_event
    u = unnested(ae, _EVENT_COLUMNS)
    rows = select(*(u.c[k] for k in _EVENT_COLUMNS)).select_from(u.source).order_by(u.c[ORDINAL])
    return (
        postgresql.insert(ae)
        .from_select(list(_EVENT_COLUMNS), rows)
        .on_conflict_do_nothing()
        .returning(ae.c.id, ae.c.asset_id, ae.c.source)
    )


@per_dialect
def _queue_events_pg(dialect: str) -> Any:
    u = unnested(t.event_queue, _QUEUE_COLUMNS)
    rows = select(*(u.c[k] for k in _QUEUE_COLUMNS)).select_from(u.source).order_by(u.c[ORDINAL])
    return insert(t.event_queue).from_select(list(_QUEUE_COLUMNS), rows)


@dataclass
class Outcome:
    """What one watcher made of one message: an event, a skip, or a dead letter."""

    watcher_id: int
    asset_id: int
    message: Message
    kind: Literal["event", "skip", "dead"]
    payload: Any = None
    encoding: str | None = None
    error: str | None = None


@dataclass
class BatchResult:
    """Counts of one committed batch."""

    events: int = 0
    deduped: int = 0
    skipped: int = 0
    dead: int = 0
    counts: dict[int, WatcherCounts] = field(default_factory=dict)


def record_batch(
    conn: Connection,
    outcomes: Sequence[Outcome],
    consumers: Mapping[int, Sequence[str]],
    sources: Mapping[int, str],
    max_body: int = DEFAULT_MAX_DEAD_LETTER_BODY,
) -> BatchResult:
    """Store one received batch inside the caller's transaction: events, dead letters, counters.

    `sources` names each watcher's trigger (secrets masked) for its dead letters,
    which keep the first `max_body` bytes of their message's body.
    """
    now = utcnow()
    result = BatchResult()
    counts: dict[int, WatcherCounts] = {}
    events: list[NewEvent] = []
    watcher_of_source: dict[str, int] = {}
    dead_rows: list[dict[str, Any]] = []
    for o in outcomes:
        c = counts.setdefault(o.watcher_id, WatcherCounts())
        c.received += 1
        if o.kind == "event":
            event = watcher_event(o.watcher_id, o.asset_id, o.message, o.payload, o.encoding, now)
            watcher_of_source[event.source] = o.watcher_id
            events.append(event)
        elif o.kind == "skip":
            c.skipped += 1
        else:
            c.dead_lettered += 1
            body, size, truncated = body_head(o.message.body, max_body)
            dead_rows.append(
                {
                    "watcher_id": o.watcher_id,
                    "source": sources.get(o.watcher_id, ""),
                    "dedupe_key": o.message.dedupe_key,
                    "body": body,
                    "body_size": size,
                    "body_truncated": truncated,
                    "headers": o.message.headers,
                    "message": message_extra(o.message),
                    "error": o.error or "unknown error",
                    "created_at": now,
                }
            )
    offered: dict[int, int] = {}
    for event in events:
        wid = watcher_of_source[event.source]
        offered[wid] = offered.get(wid, 0) + 1
    for _event_id, _asset_id, source in insert_events(conn, events, consumers, now):
        counts[watcher_of_source[source]].events += 1
    for wid, c in counts.items():
        c.deduped = offered.get(wid, 0) - c.events
    if dead_rows:
        conn.execute(upsert_ignore(conn, t.dead_letter), dead_rows)
    add_counts(conn, counts, now)
    result.counts = counts
    result.events = sum(c.events for c in counts.values())
    result.deduped = sum(c.deduped for c in counts.values())
    result.skipped = sum(c.skipped for c in counts.values())
    result.dead = len(dead_rows)
    return result


@dataclass(frozen=True)
class StoredDeadLetter:
    """A dead letter asked for replay, as the triggerer reads it back."""

    id: int
    watcher_id: int
    message: Message


def requested_replays(engine: Engine, watcher_ids: Sequence[int], limit: int = 500) -> list[StoredDeadLetter]:
    """Dead letters of these watchers whose replay was asked and not done, oldest first."""
    d = t.dead_letter
    with engine.connect() as conn:
        rows = conn.execute(
            select(d.c.id, d.c.watcher_id, d.c.body, d.c.headers, d.c.message, d.c.dedupe_key)
            .where(
                d.c.replay_requested_at.is_not(None), d.c.replayed_at.is_(None), d.c.watcher_id.in_(list(watcher_ids))
            )
            .order_by(d.c.id)
            .limit(limit)
        ).all()
    letters = []
    for row in rows:
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
        letters.append(StoredDeadLetter(int(row.id), int(row.watcher_id), message))
    return letters


def replay_dead_letter(
    conn: Connection,
    letter_id: int,
    event: NewEvent | None,
    error: str | None,
    consumers: Mapping[int, Sequence[str]],
) -> int:
    """Store what a replayed dead letter became, inside the caller's transaction; returns events made.

    With `error`, the letter stays a dead letter with the new error; otherwise
    `event` (None when the trigger now skips the message) is inserted and the
    letter marked replayed.
    """
    d = t.dead_letter
    now = utcnow()
    if error is not None:
        conn.execute(
            update(d).where(d.c.id == letter_id).values(error=error, replay_requested_at=None, replay_failed_at=now)
        )
        return 0
    created = insert_events(conn, [event], consumers, now) if event is not None else []
    conn.execute(
        update(d)
        .where(d.c.id == letter_id)
        .values(replayed_at=now, replay_requested_at=None, replayed_event_id=created[0][0] if created else None)
    )
    return len(created)


def backlog(engine: Engine, cap: int) -> int:
    """Events queued for runs, counted up to `cap` (cheap however large the backlog)."""
    with engine.connect() as conn:
        sub = select(t.event_queue.c.id).limit(cap).subquery()
        return int(conn.execute(select(func.count()).select_from(sub)).scalar_one())
