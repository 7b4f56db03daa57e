"""Stream checkpoints: where each watcher has read a stream that has no acknowledgement.

Kinesis (and any broker like it) keeps no consumer position of its own, so the
position of every record that became an event, a skip or a dead letter is
written here in the delivery's own transaction (`save`), and read back before
the trigger connects again (`load`). A record is therefore never committed
without its position, nor its position without the record: after a kill -9 the
stream is read on from exactly what the database holds (docs/adr/0003).

What would violate this: writing a checkpoint in a transaction of its own, or
anywhere but here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects import postgresql, sqlite

from herald.store import tables as t
from herald.store.types import utcnow


def latest(positions: Iterable[tuple[str, str] | None]) -> dict[str, str]:
    """The last position of each key, in the order given (a batch holds each shard's records in order)."""
    found: dict[str, str] = {}
    for position in positions:
        if position is not None:
            key, value = position
            found[key] = value
    return found


def save(conn: Connection, watcher_ids: Sequence[int], positions: Mapping[str, str]) -> None:
    """Record `positions` for each of the watchers, inside the caller's (the delivery's) transaction."""
    if not positions or not watcher_ids:
        return
    now = utcnow()
    rows = [
        {"watcher_id": wid, "position_key": key, "position": value, "updated_at": now}
        for wid in watcher_ids
        for key, value in positions.items()
    ]
    c = t.stream_checkpoint
    if conn.dialect.name == "postgresql":
        pg = postgresql.insert(c)
        conn.execute(
            pg.on_conflict_do_update(
                index_elements=[c.c.watcher_id, c.c.position_key],
                set_={"position": pg.excluded.position, "updated_at": pg.excluded.updated_at},
            ),
            rows,
        )
    elif conn.dialect.name == "sqlite":
        lite = sqlite.insert(c)
        conn.execute(
            lite.on_conflict_do_update(
                index_elements=[c.c.watcher_id, c.c.position_key],
                set_={"position": lite.excluded.position, "updated_at": lite.excluded.updated_at},
            ),
            rows,
        )
    else:
        raise NotImplementedError(f"unsupported database {conn.dialect.name}")


def save_batch(conn: Connection, watcher_ids: Sequence[int], positions: Iterable[tuple[str, str] | None]) -> None:
    """Write a delivered batch's stream positions (`Message.checkpoint`) in the delivery's transaction.

    Every message of the batch counts, whatever it became (event, skip, dead
    letter): each was dealt with once its outcome is committed, so none is read again.
    """
    found = latest(positions)
    if found:
        save(conn, watcher_ids, found)


def load(engine: Engine, watcher_ids: Sequence[int]) -> dict[str, str]:
    """The positions to resume from for a consumer shared by `watcher_ids`.

    Watchers of one consumer are written together, so their positions agree.
    Where they do not (a watcher that read the stream in another consumer
    before), the one written longest ago wins: that watcher is furthest
    behind, and what the others read again is deduplicated by their events'
    dedupe keys, where the other choice would skip records for it.
    """
    if not watcher_ids:
        return {}
    c = t.stream_checkpoint
    with engine.connect() as conn:
        rows = conn.execute(
            select(c.c.position_key, c.c.position)
            .where(c.c.watcher_id.in_(list(watcher_ids)))
            .order_by(c.c.updated_at.desc(), c.c.watcher_id)
        ).all()
    # Newest first, so the oldest row of each key is written last and wins.
    return {str(key): str(value) for key, value in rows}
