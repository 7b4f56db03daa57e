"""The embedded `local://` queue: messages kept in the metadata database."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select

from herald.store.tables import local_queue_message
from herald.store.types import utcnow


def put(engine: Engine, queue: str, bodies: Sequence[bytes], headers: dict[str, str] | None = None) -> list[int]:
    """Append messages to `queue` and wake its consumer; returns their ids."""
    from herald import notify

    now = utcnow()
    with engine.begin() as conn:
        ids = [
            int(r[0])
            for r in conn.execute(
                insert(local_queue_message).returning(local_queue_message.c.id, sort_by_parameter_order=True),
                [{"queue": queue, "body": body, "headers": headers or {}, "created_at": now} for body in bodies],
            )
        ]
        notified = notify.notify_in(conn, notify.local_channel(queue))
    if not notified:
        notify.notify(engine.url.render_as_string(hide_password=False), notify.local_channel(queue))
    return ids


def fetch(engine: Engine, queue: str, after_id: int, limit: int) -> list[Any]:
    """Up to `limit` messages of `queue` with an id above `after_id`, oldest first."""
    t = local_queue_message
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(t.c.id, t.c.body, t.c.headers, t.c.created_at)
                .where(t.c.queue == queue, t.c.id > after_id)
                .order_by(t.c.id)
                .limit(limit)
            )
        )


def claim(engine: Engine, queue: str, limit: int) -> tuple[Connection, list[Any]] | None:
    """Lock up to `limit` messages of `queue` that no other reader has locked, oldest first.

    PostgreSQL only (`FOR UPDATE SKIP LOCKED`): several triggerers read one queue,
    each its own rows. Returns the connection, its transaction left open, and the
    rows; None when no row is free. The caller ends the transaction: committing
    the batch's events and `remove` in it, or rolling back to give the rows back.
    """
    t = local_queue_message
    conn = engine.connect()
    try:
        conn.begin()
        rows = list(
            conn.execute(
                select(t.c.id, t.c.body, t.c.headers, t.c.created_at)
                .where(t.c.queue == queue)
                .order_by(t.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
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
        conn.execute(delete(local_queue_message).where(local_queue_message.c.id.in_(list(ids))))


def depth(engine: Engine, queue: str) -> int:
    """How many messages wait in `queue`."""
    from sqlalchemy import func

    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(local_queue_message).where(local_queue_message.c.queue == queue)
            ).scalar_one()
        )
