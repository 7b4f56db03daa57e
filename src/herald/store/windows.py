"""What windows and absences need from the database: events' extras, and the keys an absence has seen.

`asset_key_seen` holds, per DAG scheduled on `asset.missing_for(...)`, each key's
last event and whether its current silence has made its run (`alerted`). A
key's new event clears `alerted`; the run of a silence sets it with a guarded
UPDATE, so two schedulers never make two runs of one silence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, select, update

from herald.store import tables as t
from herald.store.events import upsert_ignore

ks = t.asset_key_seen
_CHUNK = 500


def lock_dags(conn: Connection, dag_ids: list[str]) -> list[str]:
    """Lock these DAGs' rows (SKIP LOCKED) and return those locked: a window is planned from ALL its
    DAG's queued events, so only one scheduler at a time may plan one DAG."""
    if not dag_ids:
        return []
    return list(
        conn.execute(
            select(t.dag.c.dag_id)
            .where(t.dag.c.dag_id.in_(sorted(dag_ids)))
            .order_by(t.dag.c.dag_id)
            .with_for_update(skip_locked=True)
        ).scalars()
    )


def event_extras(conn: Connection, event_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The extra of each of these events, by id."""
    ids = sorted(set(event_ids))
    found: dict[int, dict[str, Any]] = {}
    for i in range(0, len(ids), _CHUNK):
        for row in conn.execute(
            select(t.asset_event.c.id, t.asset_event.c.extra).where(t.asset_event.c.id.in_(ids[i : i + _CHUNK]))
        ):
            found[int(row.id)] = row.extra or {}
    return found


def saw(conn: Connection, dag_id: str, latest: Mapping[str, tuple[datetime, int]]) -> None:
    """Keys that sent events: key -> (when, event id) of its latest; each one's silence starts again."""
    if not latest:
        return
    keys = sorted(latest)
    known: dict[str, int] = {}
    for i in range(0, len(keys), _CHUNK):
        for row in conn.execute(
            select(ks.c.key, ks.c.last_event_id).where(ks.c.dag_id == dag_id, ks.c.key.in_(keys[i : i + _CHUNK]))
        ):
            known[row.key] = int(row.last_event_id)
    fresh = [
        {"dag_id": dag_id, "key": k, "last_seen": latest[k][0], "last_event_id": latest[k][1], "alerted": False}
        for k in keys
        if k not in known
    ]
    if fresh:
        # ignored on conflict: another scheduler saw the key first, the UPDATE below then applies
        conn.execute(upsert_ignore(conn, ks), fresh)
    newer = [{"b_key": k, "b_seen": latest[k][0], "b_event": latest[k][1]} for k in keys]
    conn.execute(
        update(ks)
        .where(ks.c.dag_id == dag_id, ks.c.key == bindparam("b_key"), ks.c.last_event_id < bindparam("b_event"))
        .values(last_seen=bindparam("b_seen"), last_event_id=bindparam("b_event"), alerted=False)
        .execution_options(synchronize_session=False),
        newer,
    )


def silent(conn: Connection, dag_id: str, since: datetime, limit: int) -> list[Any]:
    """Keys of `dag_id` not heard from since `since` whose silence has made no run yet: key, last_seen,
    last_event_id (oldest silence first)."""
    return list(
        conn.execute(
            select(ks.c.key, ks.c.last_seen, ks.c.last_event_id)
            .where(ks.c.dag_id == dag_id, ks.c.alerted.is_(False), ks.c.last_seen <= since)
            .order_by(ks.c.last_seen)
            .limit(limit)
        ).all()
    )


def alert(conn: Connection, dag_id: str, key: str, last_event_id: int) -> bool:
    """Mark this silence of `key` as having made its run; False when it already had (or the key spoke again)."""
    return bool(
        conn.execute(
            update(ks)
            .where(
                and_(
                    ks.c.dag_id == dag_id,
                    ks.c.key == key,
                    ks.c.last_event_id == last_event_id,
                    ks.c.alerted.is_(False),
                )
            )
            .values(alerted=True)
        ).rowcount
    )


def next_silence(conn: Connection, dag_id: str) -> datetime | None:
    """When the quietest key not yet alerted was last heard from (its silence ends `seconds` later)."""
    found: datetime | None = conn.execute(
        select(func.min(ks.c.last_seen)).where(ks.c.dag_id == dag_id, ks.c.alerted.is_(False))
    ).scalar()
    return found
