"""The `watcher` table's writes made while consuming: health, leases, lag and counters; pausing.

Rows are created by the DAG sync (`store/sync.py`); this module owns what the
triggerer changes on them afterwards, and a user's pause and resume. States are
`WatcherState`; a paused watcher keeps `paused` whatever a triggerer reports.

What would violate this: a triggerer module building an UPDATE of `watcher`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, or_, select, update

from herald.sdk.masking import mask_text
from herald.store import tables as t
from herald.store.states import WATCHER_RESUMED, WatcherState
from herald.store.types import utcnow


@dataclass
class WatcherCounts:
    """What one delivered batch adds to one watcher's counters."""

    received: int = 0
    events: int = 0
    deduped: int = 0
    skipped: int = 0
    dead_lettered: int = 0


def set_state(engine: Engine, ids: Sequence[int], state: WatcherState, error: str | None = None) -> None:
    """Record the health of the watchers `ids` (and the error that made it, if any)."""
    values: dict[str, Any] = {"state": WatcherState(state).value, "updated_at": utcnow()}
    if error is not None:
        values["last_error"] = mask_text(error)
    w = t.watcher
    with engine.begin() as conn:
        # a consumer stopping because its watcher was paused must not report it "stopped"
        conn.execute(update(w).where(w.c.id.in_(list(ids)), w.c.state != WatcherState.PAUSED).values(**values))


def set_paused(conn: Connection, watcher_id: int, paused: bool) -> bool:
    """Pause a watcher (no triggerer consumes it; its messages wait in the broker) or resume it.

    Returns False when the watcher already was in the state asked for. Pausing
    also gives its lease up, so the triggerer holding it stops at its next lease
    round and none other takes it.
    """
    w = t.watcher
    if paused:
        changed = conn.execute(
            update(w)
            .where(w.c.id == watcher_id, w.c.state != WatcherState.PAUSED)
            .values(state=WatcherState.PAUSED, lease_owner=None, lease_expires_at=None, updated_at=utcnow())
        ).rowcount
    else:
        changed = conn.execute(
            update(w)
            .where(w.c.id == watcher_id, w.c.state == WatcherState.PAUSED)
            .values(state=WATCHER_RESUMED, updated_at=utcnow())
        ).rowcount
    return bool(changed)


def paused(engine: Engine, ids: Sequence[int]) -> set[int]:
    """Which of the watchers `ids` are paused."""
    if not ids:
        return set()
    w = t.watcher
    with engine.connect() as conn:
        rows = conn.execute(select(w.c.id).where(w.c.id.in_(list(ids)), w.c.state == WatcherState.PAUSED))
        return {int(r.id) for r in rows}


def find(conn: Connection, watcher_id: int) -> dict[str, Any] | None:
    """`{id, asset, name, state, consumer_key}` of an active watcher, or None."""
    w, a = t.watcher, t.asset
    row = conn.execute(
        select(w.c.id, w.c.name, w.c.state, w.c.consumer_key, a.c.name.label("asset"))
        .join(a, a.c.id == w.c.asset_id)
        .where(w.c.id == watcher_id, w.c.is_active)
    ).first()
    if row is None:
        return None
    return {"id": int(row.id), "asset": row.asset, "name": row.name, "state": row.state, "key": row.consumer_key}


def sharing(conn: Connection, watcher_id: int, consumer_key: str) -> list[dict[str, Any]]:
    """The other active watchers that read through the same connection as `watcher_id` (same consumer key)."""
    w, a = t.watcher, t.asset
    rows = conn.execute(
        select(w.c.id, w.c.name, a.c.name.label("asset"))
        .join(a, a.c.id == w.c.asset_id)
        .where(w.c.consumer_key == consumer_key, w.c.id != watcher_id, w.c.is_active)
        .order_by(w.c.id)
    )
    return [{"id": int(r.id), "asset": r.asset, "name": r.name} for r in rows]


def set_lags(engine: Engine, lags: Mapping[int, int]) -> None:
    """Record each watcher's lag (watcher id -> messages waiting) in one transaction and one batch."""
    if not lags:
        return
    w = t.watcher
    with engine.begin() as conn:
        conn.execute(
            update(w).where(w.c.id == bindparam("watcher_id")).values(lag=bindparam("new_lag")),
            [{"watcher_id": wid, "new_lag": lag} for wid, lag in lags.items()],
        )


def add_counts(conn: Connection, counts: Mapping[int, WatcherCounts], now: datetime) -> None:
    """Add a batch's counts to each watcher, inside the delivery's transaction."""
    for watcher_id, c in counts.items():
        conn.execute(
            _ADD_COUNTS,
            {
                "watcher": watcher_id,
                "add_received": c.received,
                "add_events": c.events,
                "add_deduped": c.deduped,
                "add_skipped": c.skipped,
                "add_dead": c.dead_lettered,
                "now": now,
            },
        )


_ADD_COUNTS = (
    update(t.watcher)
    .where(t.watcher.c.id == bindparam("watcher"))
    .values(
        received=t.watcher.c.received + bindparam("add_received"),
        events=t.watcher.c.events + bindparam("add_events"),
        deduped=t.watcher.c.deduped + bindparam("add_deduped"),
        skipped=t.watcher.c.skipped + bindparam("add_skipped"),
        dead_lettered=t.watcher.c.dead_lettered + bindparam("add_dead"),
        last_message_at=bindparam("now", type_=t.watcher.c.last_message_at.type),
        # consuming again means the trouble is over: a running watcher shows no old error
        last_error=None,
    )
)


def claim_leases(engine: Engine, owner: str, wanted: Mapping[str, Sequence[int]], ttl: float) -> set[str]:
    """Take or renew the leases of each consumer group's watchers; returns the groups held.

    A group is held only when all its watchers are (they share one connection), so
    a group with a paused watcher is held by no one. Every group is claimed by one
    UPDATE, and the part of a group taken without the rest given back by one more:
    a triggerer renews a hundred leases as cheaply as one (idle CPU).
    """
    groups = {key: list(ids) for key, ids in wanted.items() if ids}
    every_id = [i for ids in groups.values() for i in ids]
    if not every_id:
        return set()
    now = utcnow()
    w = t.watcher
    with engine.begin() as conn:
        taken = {
            int(i)
            for i in conn.execute(
                update(w)
                .where(
                    w.c.id.in_(every_id),
                    or_(w.c.lease_owner.is_(None), w.c.lease_owner == owner, w.c.lease_expires_at < now),
                    w.c.state != WatcherState.PAUSED,  # a paused watcher is held by no one
                )
                .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=ttl))
                .returning(w.c.id)
            ).scalars()
        }
        owned = {key for key, ids in groups.items() if taken.issuperset(ids)}
        partly = [i for key, ids in groups.items() if key not in owned for i in ids if i in taken]
        if partly:
            conn.execute(update(w).where(w.c.id.in_(partly), w.c.lease_owner == owner).values(lease_owner=None))
    return owned


def release_leases(engine: Engine, owner: str, ids: Sequence[int]) -> None:
    """Give leases up at a clean stop, so another triggerer takes the watchers at once."""
    w = t.watcher
    with engine.begin() as conn:
        conn.execute(update(w).where(w.c.id.in_(list(ids)), w.c.lease_owner == owner).values(lease_owner=None))


def local_queue_is_watched(engine: Engine, queue: str) -> bool:
    """Whether an active watcher consumes `local://queue` (a publish to it would otherwise just wait)."""
    with engine.connect() as conn:
        triggers = conn.execute(select(t.watcher.c.trigger).where(t.watcher.c.is_active.is_(True))).scalars()
        return any(isinstance(d, dict) and d.get("broker") == "local" and d.get("queue") == queue for d in triggers)
