"""The embedded `local://` queue: messages kept in the metadata database."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Connection, Dialect, Engine, Text, bindparam, delete, func, select, type_coerce, update

from herald.store.events import upsert_ignore
from herald.store.sql import member, per_dialect
from herald.store.tables import local_queue_inbox, local_queue_message
from herald.store.types import utcnow

if TYPE_CHECKING:
    from herald.store.inbox import InboxRow

#: publish keys looked up per statement (below every database's bound-parameter limit)
_KEYS_PER_QUERY = 500


@dataclass(frozen=True)
class Publish:
    """One publisher's messages for one queue, each with the key its publisher chose."""

    queue: str
    bodies: Sequence[bytes]
    headers: dict[str, str]
    keys: Sequence[str]
    #: when it was published, if before it is stored (a message moved from the inbox); else now
    created_at: datetime | None = None


def new_keys(n: int) -> list[str]:
    """Fresh publish keys, one per message (random: unique without asking the database)."""
    return [uuid.uuid4().hex for _ in range(n)]


def put(
    engine: Engine,
    queue: str,
    bodies: Sequence[bytes],
    headers: dict[str, str] | None = None,
    keys: Sequence[str] | None = None,
) -> list[int]:
    """Append messages to `queue` and wake its consumer; returns their ids.

    `keys` (one per body, made here when not given) make a call sent again harmless:
    a key whose row still waits inserts nothing (its id is that row's); a row
    consumed since is stored again, and its event turned away as a duplicate
    (the key is the message's dedupe key).
    """
    from herald import notify

    publish = Publish(queue, bodies, headers or {}, list(keys) if keys is not None else new_keys(len(bodies)))
    with engine.begin() as conn:
        [ids] = put_in(conn, [publish])
        notified = notify.notify_in(conn, notify.local_channel(queue))
    if not notified:
        notify.notify(engine.url.render_as_string(hide_password=False), notify.local_channel(queue))
    return ids


def put_in(conn: Connection, publishes: Sequence[Publish]) -> list[list[int]]:
    """Store several publishers' messages inside the caller's transaction; each one's ids.

    A key stored already (the same publish sent again) is skipped, not doubled.
    """
    now = utcnow()
    rows = [
        {"queue": p.queue, "body": body, "headers": p.headers, "created_at": p.created_at or now, "publish_key": key}
        for p in publishes
        for body, key in zip(p.bodies, p.keys, strict=True)
    ]
    if not rows:
        return [[] for _ in publishes]
    t = local_queue_message
    id_of = {
        key: int(row_id)
        for key, row_id in conn.execute(upsert_ignore(conn, t).returning(t.c.publish_key, t.c.id), rows)
    }
    skipped = [key for p in publishes for key in p.keys if key not in id_of]
    if skipped:  # sent again: the rows stored the first time, where not consumed yet
        id_of.update(_ids_of(conn, skipped))
    return [[id_of.get(key, 0) for key in p.keys] for p in publishes]


def moved_up_to(engine: Engine, inbox: str) -> int:
    """The highest id of the publish inbox `inbox` (its identity) moved into the queue; 0 for none."""
    t = local_queue_inbox
    with engine.connect() as conn:
        return int(conn.execute(select(t.c.moved_up_to).where(t.c.inbox == inbox)).scalar() or 0)


def move_in(engine: Engine, inbox: str, rows: Sequence[InboxRow]) -> tuple[int, set[str]]:
    """Store the inbox's rows in the queue with the inbox's new mark, in one transaction.

    Rows at or below the mark stored already were moved before (by a move whose
    inbox rows were not dropped yet): they are left out, so a move made again
    after a crash adds nothing. Returns the new mark and the queues that got messages.
    """
    t = local_queue_inbox
    with engine.begin() as conn:
        mark = int(conn.execute(select(t.c.moved_up_to).where(t.c.inbox == inbox)).scalar() or 0)
        fresh = [r for r in rows if r.id > mark]
        if not fresh:
            return mark, set()
        if conn.dialect.name == "sqlite":
            _insert_moved(conn, fresh)
        else:
            put_in(conn, inbox_publishes(fresh))
        top = max(r.id for r in fresh)
        conn.execute(upsert_ignore(conn, t).values(inbox=inbox, moved_up_to=top))
        conn.execute(update(t).where(t.c.inbox == inbox).values(moved_up_to=top))
    return top, {r.queue for r in fresh}


_INSERT_MOVED = (
    "INSERT INTO local_queue_message (queue, body, headers, created_at, publish_key)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)


def _insert_moved(conn: Connection, rows: Sequence[InboxRow]) -> None:
    """Insert the inbox's rows with one executemany of the driver (SQLite), skipping keys stored already.

    What `put_in` stores, without its cost per row (~12 us against ~5): no ids
    returned, and the headers kept as the inbox's JSON text (`json.dumps` of a
    dict of strings, what the JSON column stores). The time goes through the
    column's own conversion, so it is stored as every other write stores it.
    """
    dialect = conn.dialect
    stamp = local_queue_message.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    assert stamp is not None
    conn.exec_driver_sql(
        _INSERT_MOVED,
        [(r.queue, r.body, r.headers_json, stamp(r.created_at), r.publish_key) for r in rows],
    )


def inbox_publishes(rows: Sequence[InboxRow]) -> list[Publish]:
    """The inbox's rows as publishes of one message each, with their keys and times."""
    return [Publish(r.queue, [r.body], r.headers, [r.publish_key], r.created_at) for r in rows]


def _ids_of(conn: Connection, keys: Iterable[str]) -> dict[str, int]:
    t = local_queue_message
    wanted = list(keys)
    found: dict[str, int] = {}
    for i in range(0, len(wanted), _KEYS_PER_QUERY):
        chunk = wanted[i : i + _KEYS_PER_QUERY]
        query = select(t.c.publish_key, t.c.id).where(t.c.publish_key.in_(chunk))
        found.update((key, int(row_id)) for key, row_id in conn.execute(query))
    return found


class QueuedMessage(NamedTuple):
    """A message waiting in a queue, as `fetch` reads it."""

    id: int
    body: bytes
    headers: dict[str, str]
    created_at: datetime
    publish_key: str | None


def fetch(engine: Engine, queue: str, after_id: int, limit: int) -> list[QueuedMessage]:
    """Up to `limit` messages of `queue` with an id above `after_id`, oldest first.

    The headers (JSON) and times are read as stored and converted once per distinct
    value: one publish's messages share both, and converting each row's was most of
    the cost of a read (a triggerer's batch of 2,000). Rows that share them share
    the headers' dict: copy it before changing it.
    """
    with engine.connect() as conn:
        dialect = conn.dialect
        rows = conn.execute(_fetch(conn), {"queue": queue, "after": after_id, "limit": limit}).all()
    headers = _converter(local_queue_message.c.headers.type, dialect)
    created = _converter(local_queue_message.c.created_at.type, dialect)
    return [QueuedMessage(int(i), bytes(b), headers(h), created(c), k) for i, b, h, c, k in rows]


@per_dialect
def _fetch(dialect: str) -> Any:
    t = local_queue_message
    return (
        # the headers and the time as stored: `fetch` converts them (once per distinct value)
        select(t.c.id, t.c.body, type_coerce(t.c.headers, Text), type_coerce(t.c.created_at, Text), t.c.publish_key)
        .where(t.c.queue == bindparam("queue"), t.c.id > bindparam("after"))
        .order_by(t.c.id)
        .limit(bindparam("limit"))
    )


def _converter(type_: Any, dialect: Dialect) -> Callable[[Any], Any]:
    """`type_`'s conversion of a stored value for `dialect`, remembered per value within one read."""
    process = type_.dialect_impl(dialect).result_processor(dialect, None)
    if process is None:
        return lambda value: value
    remembered: dict[Any, Any] = {}

    def convert(value: Any) -> Any:
        try:
            return remembered[value]
        except KeyError:
            out = remembered[value] = process(value)
            return out
        except TypeError:  # not hashable (a driver that decoded the JSON itself)
            return process(value)

    return convert


def claim(engine: Engine, queue: str, limit: int) -> tuple[Connection, list[Any]] | None:
    """Lock up to `limit` messages of `queue` that no other reader has locked, oldest first.

    PostgreSQL only (`FOR UPDATE SKIP LOCKED`): several triggerers read one queue,
    each its own rows. Returns the connection, its transaction left open, and the
    rows; None when no row is free. The caller ends the transaction: committing
    the batch's events and `remove` in it, or rolling back to give the rows back.
    """
    conn = engine.connect()
    try:
        conn.begin()
        rows = list(conn.execute(_CLAIM, {"queue": queue, "limit": limit}))
    except BaseException:
        conn.close()
        raise
    if not rows:
        conn.close()  # rolls back
        return None
    return conn, rows


def remove(conn: Connection, ids: Sequence[int]) -> None:
    """Delete acknowledged messages, inside the caller's transaction."""
    if ids:
        conn.execute(_remove(conn), {"ids": list(ids)})


_CLAIM = (
    select(
        local_queue_message.c.id,
        local_queue_message.c.body,
        local_queue_message.c.headers,
        local_queue_message.c.created_at,
        local_queue_message.c.publish_key,
    )
    .where(local_queue_message.c.queue == bindparam("queue"))
    .order_by(local_queue_message.c.id)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)


@per_dialect
def _remove(dialect: str) -> Any:
    return delete(local_queue_message).where(member(dialect, local_queue_message.c.id, "ids"))


def depth(engine: Engine, queue: str) -> int:
    """How many messages wait in `queue`."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(local_queue_message).where(local_queue_message.c.queue == queue)
            ).scalar_one()
        )


def queues_with_messages(engine: Engine, queues: Sequence[str]) -> set[str]:
    """Which of `queues` hold at least one message: one query for them all."""
    t = local_queue_message
    found: set[str] = set()
    with engine.connect() as conn:
        for i in range(0, len(queues), _KEYS_PER_QUERY):
            chunk = list(queues[i : i + _KEYS_PER_QUERY])
            found.update(conn.execute(select(t.c.queue).distinct().where(t.c.queue.in_(chunk))).scalars())
    return found


def depths(engine: Engine, queues: Sequence[str]) -> dict[str, int]:
    """How many messages wait in each of `queues` (0 for an empty one): one query for them all."""
    t = local_queue_message
    counts = dict.fromkeys(queues, 0)
    with engine.connect() as conn:
        for i in range(0, len(queues), _KEYS_PER_QUERY):
            chunk = list(queues[i : i + _KEYS_PER_QUERY])
            query = select(t.c.queue, func.count()).where(t.c.queue.in_(chunk)).group_by(t.c.queue)
            counts.update((q, int(n)) for q, n in conn.execute(query))
    return counts
