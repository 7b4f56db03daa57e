"""Trigger waits: deferred tries waiting on a trigger written for Airflow, run by the triggerers.

A trigger wait is a `task_wait` row with a `trigger_classpath` (written with its
try's deferral by `store.waits.add`). Triggerers share them by leases, as they
share watchers (`store.watchers`): a row is free once its `lease_expires_at` has
passed (a new row is free at once), the triggerer holding it renews it every
round, and a dead triggerer's rows are free again within one lease. A trigger
may therefore run twice at once (a holder stalled past its lease): `fire` is
guarded, so only the first outcome stored counts, and only for the deferral it
was run for (`trigger_token`).

`fire` stores how the trigger ended (`Fired`) and frees the row; the scheduler's
next pass ends the wait (`fired`), in the transaction that resumes or ends the
try, as it ends the other waits. What would violate this: a triggerer moving the
try itself (the scheduler is who hands queued tries to the executor), or a
`fire` not guarded by the token and `fired_at IS NULL`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, select, update

from herald.store import tables as t
from herald.store.states import TryState

w = t.task_wait
ti = t.task_instance
_CHUNK = 500
#: stale rows (their try ended another way) deleted per claim
_STALE_SCAN = 500


def trigger_columns(classpath: str | None, kwargs: Mapping[str, Any] | None, now: datetime) -> dict[str, Any]:
    """The trigger columns of a new `task_wait` row: free at once for a trigger wait, all NULL for the others."""
    if classpath is None:
        return {
            "trigger_classpath": None,
            "trigger_kwargs": None,
            "trigger_token": None,
            "lease_owner": None,
            "lease_expires_at": None,
            "fired": None,
            "fired_at": None,
        }
    return {
        "trigger_classpath": classpath,
        "trigger_kwargs": dict(kwargs or {}),
        "trigger_token": uuid.uuid4().hex,
        "lease_owner": None,
        "lease_expires_at": now,
        "fired": None,
        "fired_at": None,
    }


@dataclass(frozen=True)
class Fired:
    """How a trigger ended, as its triggerer stores it and the scheduler applies it.

    Attributes:
        kind: "event" (its first `TriggerEvent`: the try resumes with `event`),
            "end" (a `TaskSuccessEvent` / `TaskFailedEvent` / `TaskSkippedEvent`: the
            try ends in `state`, without resuming), or "error" (it raised, ended
            without an event, or could not be built: the try fails).
        event: the event's payload (JSON, `herald.sdk.airflow_triggers.encode_value`).
        state: the state an "end" ends the try in.
        xcoms: the values an "end" pushes (`return_value` is the try's result).
        error: what failed, for "error".
        traceback: the trigger's traceback lines, for "error".
        log: what the trigger logged while it ran (capped), for the try's log.
    """

    kind: str
    event: Any = None
    state: str | None = None
    xcoms: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    traceback: list[str] = field(default_factory=list)
    log: str = ""

    def to_wire(self) -> dict[str, Any]:
        """The `fired` column's JSON."""
        wire: dict[str, Any]
        if self.kind == "event":
            wire = {"kind": "event", "event": self.event}
        elif self.kind == "end":
            wire = {"kind": "end", "state": self.state, "xcoms": self.xcoms}
        else:
            wire = {"kind": "error", "error": self.error, "traceback": self.traceback}
        if self.log:
            wire["log"] = self.log
        return wire

    @classmethod
    def from_wire(cls, data: Any) -> Fired:
        """The outcome a `fired` column holds (an unreadable one is an error saying so)."""
        if not isinstance(data, Mapping) or data.get("kind") not in ("event", "end", "error"):
            return cls("error", error=f"the trigger's stored outcome is not readable: {data!r}")
        kind = str(data["kind"])
        log = str(data.get("log") or "")
        if kind == "event":
            return cls(kind, event=data.get("event"), log=log)
        if kind == "end":
            xcoms = data.get("xcoms")
            xcoms = dict(xcoms) if isinstance(xcoms, Mapping) else {}
            return cls(kind, state=str(data.get("state")), xcoms=xcoms, log=log)
        lines = data.get("traceback")
        return cls(kind, error=str(data.get("error")), traceback=[str(x) for x in lines or []], log=log)


@dataclass(frozen=True)
class Claimed:
    """A trigger wait a triggerer runs: what builds its trigger, and the try it resumes."""

    ti_id: int
    token: str
    classpath: str
    kwargs: dict[str, Any]
    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int


def renew(conn: Connection, owner: str, now: datetime, ttl: float) -> dict[int, str]:
    """Extend `owner`'s leases; returns the trigger waits it holds (ti_id -> token), unfired, their try deferred.

    One UPDATE whatever the number of leases. Rows it holds whose try left
    `deferred` another way (the run was cancelled or timed out) are deleted.
    """
    conn.execute(
        update(w)
        .where(w.c.lease_owner == owner, w.c.fired_at.is_(None))
        .values(lease_expires_at=now + timedelta(seconds=ttl))
    )
    rows = conn.execute(
        select(w.c.ti_id, w.c.trigger_token, ti.c.state)
        .join(ti, ti.c.id == w.c.ti_id)
        .where(w.c.lease_owner == owner, w.c.fired_at.is_(None))
    ).all()
    _delete(conn, [int(r.ti_id) for r in rows if r.state != TryState.DEFERRED])
    return {int(r.ti_id): str(r.trigger_token) for r in rows if r.state == TryState.DEFERRED}


def claim(conn: Connection, owner: str, share: int, room: int, now: datetime, ttl: float) -> list[int]:
    """Take the leases of free trigger waits for `owner`; returns their ids.

    Up to `share` free rows (never held, or whose holder's lease passed), oldest
    first; then, up to `room` in all, rows free for a whole lease already (no
    triggerer under its share took them: none must stay unrun). Rows locked by
    another triggerer's claim are skipped. Free rows whose try left `deferred`
    another way are deleted.
    """
    _delete_stale(conn, now)
    taken: list[int] = []
    until = now + timedelta(seconds=ttl)
    for limit, free_since in ((min(share, room), now), (room, now - timedelta(seconds=ttl))):
        want = limit - len(taken)
        if want <= 0:
            continue
        ids = [
            int(i)
            for i in conn.execute(
                select(w.c.ti_id)
                .join(ti, ti.c.id == w.c.ti_id)
                .where(w.c.lease_expires_at <= free_since, ti.c.state == TryState.DEFERRED)
                .order_by(w.c.lease_expires_at)
                .limit(want)
                .with_for_update(of=w, skip_locked=True)
            ).scalars()
        ]
        if ids:
            conn.execute(
                update(w)
                .where(w.c.ti_id.in_(ids), w.c.lease_expires_at <= free_since)
                .values(lease_owner=owner, lease_expires_at=until)
            )
            taken += ids
    return taken


def _delete_stale(conn: Connection, now: datetime) -> None:
    """Delete free trigger waits whose try is no longer deferred (it ended another way)."""
    stale = conn.execute(
        select(w.c.ti_id)
        .join(ti, ti.c.id == w.c.ti_id)
        .where(w.c.lease_expires_at <= now, ti.c.state != TryState.DEFERRED)
        .limit(_STALE_SCAN)
    ).scalars()
    _delete(conn, [int(i) for i in stale])


def load(conn: Connection, ti_ids: Iterable[int]) -> list[Claimed]:
    """What builds the triggers of these waits, and their tries (unfired ones only)."""
    ids = sorted(set(ti_ids))
    found: list[Claimed] = []
    dr = t.dag_run
    for i in range(0, len(ids), _CHUNK):
        rows = conn.execute(
            select(
                w.c.ti_id,
                w.c.trigger_token,
                w.c.trigger_classpath,
                w.c.trigger_kwargs,
                ti.c.dag_id,
                ti.c.task_id,
                ti.c.map_index,
                ti.c.try_number,
                dr.c.run_id,
            )
            .join(ti, ti.c.id == w.c.ti_id)
            .join(dr, dr.c.id == ti.c.run_pk)
            .where(w.c.ti_id.in_(ids[i : i + _CHUNK]), w.c.trigger_classpath.is_not(None), w.c.fired_at.is_(None))
        ).all()
        found += [
            Claimed(
                ti_id=int(r.ti_id),
                token=str(r.trigger_token),
                classpath=str(r.trigger_classpath),
                kwargs=dict(r.trigger_kwargs or {}),
                dag_id=r.dag_id,
                task_id=r.task_id,
                run_id=r.run_id,
                map_index=int(r.map_index),
                try_number=int(r.try_number),
            )
            for r in rows
        ]
    return found


def any_waiting(conn: Connection) -> bool:
    """True when at least one trigger wait has not fired (an index seek)."""
    return conn.execute(select(w.c.ti_id).where(w.c.lease_expires_at.is_not(None)).limit(1)).first() is not None


def waiting(conn: Connection) -> int:
    """How many trigger waits have not fired (held or free)."""
    return int(conn.execute(select(func.count()).select_from(w).where(w.c.lease_expires_at.is_not(None))).scalar_one())


def fire(conn: Connection, ti_id: int, token: str, outcome: Fired, now: datetime) -> bool:
    """Store how the trigger of this deferral ended, and free its row; False when it was stored already
    (another triggerer's run came first), or the deferral is gone (its try ended, or deferred again)."""
    moved = conn.execute(
        update(w)
        .where(w.c.ti_id == ti_id, w.c.trigger_token == token, w.c.fired_at.is_(None))
        .values(fired=outcome.to_wire(), fired_at=now, lease_owner=None, lease_expires_at=None)
    ).rowcount
    return bool(moved)


def release(conn: Connection, owner: str, now: datetime) -> None:
    """Give up `owner`'s leases (a clean stop): other triggerers take the triggers at their next round."""
    conn.execute(
        update(w).where(w.c.lease_owner == owner, w.c.fired_at.is_(None)).values(lease_owner=None, lease_expires_at=now)
    )


def any_fired(conn: Connection) -> bool:
    """True when a trigger has fired and its wait is not ended yet."""
    return conn.execute(select(w.c.ti_id).where(w.c.fired_at.is_not(None)).limit(1)).first() is not None


def fired(conn: Connection, limit: int) -> list[tuple[int, Fired, str]]:
    """Fired trigger waits (locked), oldest first: (ti_id, how it ended, classpath); those whose try left
    `deferred` another way are deleted."""
    rows = conn.execute(
        select(w.c.ti_id, w.c.fired, w.c.trigger_classpath, ti.c.state)
        .join(ti, ti.c.id == w.c.ti_id)
        .where(w.c.fired_at.is_not(None))
        .order_by(w.c.fired_at)
        .limit(limit)
        .with_for_update(of=w, skip_locked=True)
    ).all()
    _delete(conn, [int(r.ti_id) for r in rows if r.state != TryState.DEFERRED])
    return [
        (int(r.ti_id), Fired.from_wire(r.fired), str(r.trigger_classpath)) for r in rows if r.state == TryState.DEFERRED
    ]


def _delete(conn: Connection, ti_ids: list[int]) -> None:
    for i in range(0, len(ti_ids), _CHUNK):
        conn.execute(delete(w).where(w.c.ti_id.in_(ti_ids[i : i + _CHUNK])))
