"""Deferred tries: what each waits for (`task_wait`), and how far events were matched (`task_wait_cursor`).

A wait is written in the transaction that moves its try to `deferred`, and
deleted in the one that ends it, so a wait is exactly as durable as its try's
state. A new wait first catches up on the events of its asset since its run was
queued; from then on it is matched only against events past its asset's
cursor, found through its `match_path` / `match_value` index when its
expression requires a `path == literal`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select, update

from herald.store import tables as t
from herald.store.events import upsert_ignore
from herald.store.states import TryState
from herald.store.trigger_waits import trigger_columns

w = t.task_wait
wc = t.task_wait_cursor
ti = t.task_instance
ae = t.asset_event
_CHUNK = 500
#: events of a wait's asset looked back at when the wait starts (those since its run was queued count)
LOOK_BACK = 1000


@dataclass(frozen=True)
class NewWait:
    """A wait to store: its try, what it waits for, when it ends without its event, and its index entry."""

    ti_id: int
    asset: str | None
    match: str | None
    deadline: datetime | None
    timeout_reason: str | None
    soft_fail: bool = False
    match_path: str | None = None
    match_value: str | None = None
    #: a trigger written for Airflow that a triggerer runs (`store.trigger_waits`): its classpath and kwargs
    trigger: str | None = None
    trigger_kwargs: Mapping[str, Any] | None = None


def add(conn: Connection, waits: list[NewWait], now: datetime) -> None:
    """Store the waits of tries just deferred (replacing an earlier try's wait of the same task instance).

    An event wait counts the events of its asset stored after its run was queued
    (within the last `LOOK_BACK` events): one that came while the task was still
    starting is not missed.
    """
    if not waits:
        return
    ids = [x.ti_id for x in waits]
    end(conn, ids)
    assets = _asset_ids(conn, {x.asset for x in waits if x.asset is not None}, now)
    queued = {
        int(r.id): r.queued_at
        for r in conn.execute(
            select(ti.c.id, t.dag_run.c.queued_at)
            .join(t.dag_run, t.dag_run.c.id == ti.c.run_pk)
            .where(ti.c.id.in_(ids))
        )
    }
    since: dict[tuple[int, Any], int] = {}
    rows = []
    for x in waits:
        asset_id = assets.get(x.asset) if x.asset is not None else None
        start = 0
        if asset_id is not None:
            when = queued.get(x.ti_id)
            if (asset_id, when) not in since:
                since[(asset_id, when)] = _before(conn, asset_id, when)
            start = since[(asset_id, when)]
        rows.append(
            {
                "ti_id": x.ti_id,
                "asset_id": asset_id,
                "match": x.match,
                "match_path": x.match_path,
                "match_value": x.match_value,
                "deadline": x.deadline,
                "since_event_id": start,
                "caught_up": False,
                "timeout_reason": x.timeout_reason,
                "soft_fail": x.soft_fail,
                "created_at": now,
                **trigger_columns(x.trigger, x.trigger_kwargs, now),
            }
        )
    conn.execute(w.insert(), rows)


def _asset_ids(conn: Connection, names: set[str], now: datetime) -> dict[str, int]:
    """Ids of these assets, creating those no DAG file declared (an asset only awaited)."""
    a = t.asset
    if not names:
        return {}
    found = {r.name: int(r.id) for r in conn.execute(select(a.c.id, a.c.name).where(a.c.name.in_(sorted(names))))}
    missing = sorted(names - set(found))
    if missing:
        conn.execute(upsert_ignore(conn, a), [{"name": n, "uri": n, "created_at": now} for n in missing])
        found = {r.name: int(r.id) for r in conn.execute(select(a.c.id, a.c.name).where(a.c.name.in_(sorted(names))))}
    return found


def _before(conn: Connection, asset_id: int, since: datetime | None) -> int:
    """The last event of `asset_id` stored before `since` (0: none), looking back `LOOK_BACK` events."""
    recent = conn.execute(
        select(ae.c.id, ae.c.timestamp).where(ae.c.asset_id == asset_id).order_by(ae.c.id.desc()).limit(LOOK_BACK)
    ).all()
    if not recent:
        return 0
    for row in recent:
        if since is None or row.timestamp < since:
            return int(row.id)
    return int(recent[-1].id) - 1


def any_waiting(conn: Connection) -> bool:
    """True when at least one wait is stored."""
    return conn.execute(_ANY_WAITING).first() is not None


_ANY_WAITING = select(w.c.ti_id).limit(1)


def awaited_assets(conn: Connection) -> list[int]:
    """The assets at least one wait is for: one index seek per asset (there are few; waits are many)."""
    found: list[int] = []
    after = 0
    while True:
        q = select(w.c.asset_id).where(w.c.asset_id > after).order_by(w.c.asset_id).limit(1)
        asset_id = conn.execute(q).scalar()
        if asset_id is None:
            return found
        found.append(int(asset_id))
        after = int(asset_id)


def cursor(conn: Connection, asset_id: int) -> int | None:
    """How far the events of `asset_id` were matched (locked), made for a newly awaited asset from its waits;
    None when another scheduler is matching this asset now."""
    locked = select(wc.c.checked_through).where(wc.c.asset_id == asset_id).with_for_update(skip_locked=True)
    found = conn.execute(locked).scalar()
    if found is not None:
        return int(found)
    if conn.execute(select(wc.c.asset_id).where(wc.c.asset_id == asset_id)).first() is not None:
        return None  # there, but locked
    start = conn.execute(select(func.min(w.c.since_event_id)).where(w.c.asset_id == asset_id)).scalar() or 0
    conn.execute(upsert_ignore(conn, wc), [{"asset_id": asset_id, "checked_through": int(start)}])
    found = conn.execute(locked).scalar()
    return None if found is None else int(found)


def move_cursor(conn: Connection, asset_id: int, through: int) -> None:
    """The events of `asset_id` up to `through` have been matched against its caught-up waits."""
    conn.execute(
        update(wc).where(wc.c.asset_id == asset_id, wc.c.checked_through < through).values(checked_through=through)
    )


def _deferred_only(conn: Connection, rows: list[Any]) -> list[Any]:
    """The rows of waits whose try is still deferred; the others' waits are deleted (their try ended another way)."""
    end(conn, [int(r.ti_id) for r in rows if r.state != TryState.DEFERRED])
    return [r for r in rows if r.state == TryState.DEFERRED]


def _waits() -> Any:
    return select(w.c.ti_id, w.c.match, w.c.since_event_id, ti.c.state).join(ti, ti.c.id == w.c.ti_id)


def new_waits(conn: Connection, asset_id: int) -> list[Any]:
    """The waits on `asset_id` that have not caught up yet (locked): ti_id, match, since_event_id."""
    rows = conn.execute(
        _waits()
        .where(w.c.asset_id == asset_id, w.c.caught_up.is_(False))
        .order_by(w.c.ti_id)
        .with_for_update(of=w, skip_locked=True)
    ).all()
    return _deferred_only(conn, list(rows))


def caught_up(conn: Connection, ti_ids: list[int]) -> None:
    """These waits have been matched against every event up to their asset's cursor."""
    for i in range(0, len(ti_ids), _CHUNK):
        conn.execute(update(w).where(w.c.ti_id.in_(ti_ids[i : i + _CHUNK])).values(caught_up=True))


def indexed_paths(conn: Connection, asset_id: int) -> list[str]:
    """The `match_path`s of the waits on `asset_id`: one index seek per path (there are few; waits are many)."""
    paths: list[str] = []
    after = ""  # paths are never empty
    while True:
        q = (
            select(w.c.match_path)
            .where(w.c.asset_id == asset_id, w.c.match_path > after)
            .order_by(w.c.match_path)
            .limit(1)
        )
        found = conn.execute(q).scalar()
        if found is None:
            return paths
        paths.append(str(found))
        after = str(found)


def candidates(conn: Connection, asset_id: int, wanted: Mapping[str, Iterable[str]]) -> list[Any]:
    """Caught-up waits on `asset_id` the events may end (locked): those whose `match_path` is a key of
    `wanted` and `match_value` one of its values, and those without an index entry (every event must be
    tried on them)."""
    # one query per index path, each driven by the (asset_id, match_path, match_value) index (an OR of
    # them is not, on SQLite); caught_up is filtered here for the same reason
    q = select(w.c.ti_id, w.c.match, w.c.since_event_id, w.c.caught_up, ti.c.state).join(ti, ti.c.id == w.c.ti_id)
    q = q.where(w.c.asset_id == asset_id)
    found = list(conn.execute(q.where(w.c.match_path.is_(None)).with_for_update(of=w, skip_locked=True)).all())
    for path, values in wanted.items():
        keys = sorted(set(values))
        for i in range(0, len(keys), _CHUNK):
            chunk = q.where(w.c.match_path == path, w.c.match_value.in_(keys[i : i + _CHUNK]))
            found += conn.execute(chunk.with_for_update(of=w, skip_locked=True)).all()
    return _deferred_only(conn, [r for r in found if r.caught_up])


def events_after(conn: Connection, asset_id: int, after: int, limit: int, upto: int | None = None) -> list[Any]:
    """Events of `asset_id` with ids above `after` (and up to `upto`), oldest first: id, timestamp,
    extra, source, and the asset's name and URI."""
    a = t.asset
    q = (
        select(ae.c.id, ae.c.timestamp, ae.c.extra, ae.c.source, a.c.name, a.c.uri)
        .join(a, a.c.id == ae.c.asset_id)
        .where(ae.c.asset_id == asset_id, ae.c.id > after)
    )
    if upto is not None:
        q = q.where(ae.c.id <= upto)
    return list(conn.execute(q.order_by(ae.c.id).limit(limit)).all())


def due(conn: Connection, now: datetime, limit: int) -> list[Any]:
    """Waits whose deadline has come (locked): ti_id, asset_id, timeout_reason, soft_fail, deadline,
    trigger_classpath."""
    rows = conn.execute(
        select(
            w.c.ti_id,
            w.c.asset_id,
            w.c.timeout_reason,
            w.c.soft_fail,
            w.c.deadline,
            w.c.trigger_classpath,
            ti.c.state,
        )
        .join(ti, ti.c.id == w.c.ti_id)
        .where(w.c.deadline <= now)
        .order_by(w.c.deadline)
        .limit(limit)
        .with_for_update(of=w, skip_locked=True)
    ).all()
    return _deferred_only(conn, list(rows))


def first_deadline(conn: Connection) -> datetime | None:
    """The earliest deadline of any wait (past or ahead)."""
    found: datetime | None = conn.execute(select(func.min(w.c.deadline))).scalar()
    return found


def end(conn: Connection, ti_ids: Iterable[int]) -> None:
    """These waits are over (their try resumed, timed out, or left `deferred` another way)."""
    ids = sorted(set(ti_ids))
    for i in range(0, len(ids), _CHUNK):
        conn.execute(delete(w).where(w.c.ti_id.in_(ids[i : i + _CHUNK])))


def count(conn: Connection) -> int:
    """How many waits are stored."""
    return int(conn.execute(select(func.count()).select_from(w)).scalar_one())
