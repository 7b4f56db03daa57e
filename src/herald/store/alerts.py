"""Alert episodes, and the facts the alert conditions are read from.

An episode of one condition key ("watcher:3:down") is inserted `pending` when
the condition is first seen, moves to `firing` once it has held long enough,
and to `resolved` when it clears (a pending one that clears is deleted). The
unique (key, episode) lets one scheduler of several open an episode; each move
is a guarded UPDATE, so exactly one scheduler fires it and one resolves it,
and only that one sends the message.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from herald.store import tables as t
from herald.store.states import AlertState, RunState, TryState

al = t.alert


def open_episodes(conn: Connection) -> dict[str, Any]:
    """The pending and firing episodes, by key."""
    rows = conn.execute(select(al).where(al.c.state.in_([AlertState.PENDING, AlertState.FIRING]))).all()
    return {r.key: r for r in rows}


def start(conn: Connection, key: str, summary: str, detail: dict[str, Any], now: datetime) -> tuple[int, int] | None:
    """Open a pending episode of `key`: (its id, its number); None when another scheduler just opened one."""
    episode = int(conn.execute(select(func.max(al.c.episode)).where(al.c.key == key)).scalar() or 0) + 1
    try:
        with conn.begin_nested():
            alert_id = int(
                conn.execute(
                    insert(al)
                    .values(
                        key=key,
                        episode=episode,
                        state=AlertState.PENDING,
                        summary=summary,
                        detail=detail,
                        since=now,
                    )
                    .returning(al.c.id)
                ).scalar_one()
            )
    except IntegrityError:
        return None
    return alert_id, episode


def fire(conn: Connection, alert_id: int, summary: str, detail: dict[str, Any], now: datetime) -> bool:
    """A pending episode fires; True for the one scheduler that moved it (and sends it)."""
    return bool(
        conn.execute(
            update(al)
            .where(al.c.id == alert_id, al.c.state == AlertState.PENDING)
            .values(state=AlertState.FIRING, fired_at=now, summary=summary, detail=detail)
        ).rowcount
    )


def resolve(conn: Connection, alert_id: int, now: datetime) -> bool:
    """A firing episode is resolved; True for the one scheduler that moved it (and sends it)."""
    return bool(
        conn.execute(
            update(al)
            .where(al.c.id == alert_id, al.c.state == AlertState.FIRING)
            .values(state=AlertState.RESOLVED, resolved_at=now)
        ).rowcount
    )


def drop(conn: Connection, alert_id: int) -> None:
    """A pending episode whose condition cleared before it fired leaves no trace."""
    conn.execute(delete(al).where(al.c.id == alert_id, al.c.state == AlertState.PENDING))


def recent(conn: Connection, limit: int = 100) -> list[Any]:
    """The latest episodes that fired, newest first."""
    return list(
        conn.execute(select(al).where(al.c.state != AlertState.PENDING).order_by(al.c.id.desc()).limit(limit)).all()
    )


# -- facts ----------------------------------------------------------------------------------------


def watchers(conn: Connection) -> list[Any]:
    """Every active watcher with its asset: health, lag, last error, lease."""
    w, a = t.watcher, t.asset
    return list(
        conn.execute(
            select(
                w.c.id,
                w.c.name,
                a.c.name.label("asset"),
                w.c.state,
                w.c.last_error,
                w.c.lag,
                w.c.lease_owner,
                w.c.lease_expires_at,
            )
            .join(a, a.c.id == w.c.asset_id)
            .where(w.c.is_active)
            .order_by(w.c.id)
        ).all()
    )


def latest_ends(conn: Connection) -> list[Any]:
    """The latest finished run (by run id order) of each DAG of the files: dag, run id, state, end.

    One short backward walk of the (dag_id, id) index per DAG, so the cost does not
    grow with the number of runs kept.
    """
    dr, d = t.dag_run, t.dag
    found = []
    for dag_id in conn.execute(select(d.c.dag_id).where(d.c.is_active).order_by(d.c.dag_id)).scalars():
        row = conn.execute(
            select(dr.c.id, dr.c.dag_id, dr.c.run_id, dr.c.state, dr.c.ended_at)
            .where(dr.c.dag_id == dag_id, dr.c.state.in_([RunState.SUCCESS, RunState.FAILED]))
            .order_by(dr.c.id.desc())
            .limit(1)
        ).first()
        if row is not None:
            found.append(row)
    return found


def failed_tasks(conn: Connection, run_pks: list[int]) -> dict[int, list[tuple[str, str | None]]]:
    """The failed tries of these runs: (task id, error) each."""
    ti = t.task_instance
    found: dict[int, list[tuple[str, str | None]]] = defaultdict(list)
    if run_pks:
        for r in conn.execute(
            select(ti.c.run_pk, ti.c.task_id, ti.c.error)
            .where(ti.c.run_pk.in_(run_pks), ti.c.state == TryState.FAILED)
            .order_by(ti.c.id)
        ):
            found[int(r.run_pk)].append((r.task_id, r.error))
    return found


#: the newest runs the latency alert looks at (bounds each pass's reading, whatever the table holds)
LATENCY_RUNS = 2000


def latencies(conn: Connection, now: datetime, window: float) -> dict[str, list[float]]:
    """Event-to-task latency of the runs made by events that started in the last `window` seconds, by DAG.

    A run's latency: from its newest event to the start of its first task. Only the
    newest `LATENCY_RUNS` runs are read (a backward walk of the primary key).
    """
    dr, dre, ae, ti = t.dag_run, t.dag_run_event, t.asset_event, t.task_instance
    since = now - timedelta(seconds=window)
    newest = select(dr.c.id, dr.c.dag_id, dr.c.started_at).order_by(dr.c.id.desc()).limit(LATENCY_RUNS).subquery()
    events = {
        int(r.id): (r.dag_id, r.event_at)
        for r in conn.execute(
            select(newest.c.id, newest.c.dag_id, func.max(ae.c.timestamp).label("event_at"))
            .join(dre, dre.c.run_pk == newest.c.id)
            .join(ae, ae.c.id == dre.c.event_id)
            .where(newest.c.started_at >= since)
            .group_by(newest.c.id, newest.c.dag_id)
        )
    }
    if not events:
        return {}
    found: dict[str, list[float]] = defaultdict(list)
    pks = sorted(events)
    for i in range(0, len(pks), 500):
        for r in conn.execute(
            select(ti.c.run_pk, func.min(ti.c.started_at).label("first"))
            .where(ti.c.run_pk.in_(pks[i : i + 500]), ti.c.started_at.is_not(None))
            .group_by(ti.c.run_pk)
        ):
            dag_id, event_at = events[int(r.run_pk)]
            if r.first is not None and event_at is not None:
                found[dag_id].append(max(0.0, (r.first - event_at).total_seconds()))
    return found
