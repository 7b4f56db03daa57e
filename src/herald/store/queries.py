"""Read models shared by the CLI and the API: plain dicts, newest first."""

from __future__ import annotations

import base64
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, desc, func, select

from herald.store import tables as t


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def list_dags(conn: Connection, limit: int, *, offset: int = 0, dag_id: str | None = None) -> list[dict[str, Any]]:
    """DAGs with their schedule, policy and whether they are paused (only `dag_id`, if given)."""
    q = select(t.dag).where(t.dag.c.is_active)
    if dag_id is not None:
        q = q.where(t.dag.c.dag_id == dag_id)
    rows = conn.execute(q.order_by(t.dag.c.dag_id).limit(limit).offset(offset)).all()
    return [
        {
            "dag_id": r.dag_id,
            "fileloc": r.fileloc,
            "schedule": r.schedule,
            "is_paused": bool(r.is_paused),
            "max_active_runs": r.max_active_runs,
            "batch": ({"max_events": r.batch_max_events, "max_wait": r.batch_max_wait} if r.batch_max_events else None),
            "tasks": r.task_ids,
            "next_cron_at": _iso(r.next_cron_at),
            "description": r.description,
        }
        for r in rows
    ]


def get_dag(conn: Connection, dag_id: str) -> dict[str, Any] | None:
    """One DAG with its task graph."""
    r = conn.execute(select(t.dag).where(t.dag.c.dag_id == dag_id, t.dag.c.is_active)).first()
    if r is None:
        return None
    return {
        "dag_id": r.dag_id,
        "fileloc": r.fileloc,
        "schedule": r.schedule,
        "is_paused": bool(r.is_paused),
        "max_active_runs": r.max_active_runs,
        "tasks": r.tasks,
        "description": r.description,
    }


def list_import_errors(conn: Connection, limit: int, *, offset: int = 0) -> list[dict[str, Any]]:
    """DAG files that failed to import, with their tracebacks."""
    rows = conn.execute(select(t.import_error).order_by(desc(t.import_error.c.id)).limit(limit).offset(offset)).all()
    return [{"fileloc": r.fileloc, "error": r.error, "timestamp": _iso(r.timestamp)} for r in rows]


def _events_of_runs(conn: Connection, run_pks: list[int]) -> dict[int, list[int]]:
    found: dict[int, list[int]] = defaultdict(list)
    if run_pks:
        for row in conn.execute(
            select(t.dag_run_event.c.run_pk, t.dag_run_event.c.event_id)
            .where(t.dag_run_event.c.run_pk.in_(run_pks))
            .order_by(t.dag_run_event.c.event_id)
        ):
            found[int(row.run_pk)].append(int(row.event_id))
    return found


def _run_dict(r: Any, events: list[int]) -> dict[str, Any]:
    return {
        "run_id": r.run_id,
        "dag_id": r.dag_id,
        "state": r.state,
        "run_type": r.run_type,
        "conf": r.conf,
        "queued_at": _iso(r.queued_at),
        "started_at": _iso(r.started_at),
        "ended_at": _iso(r.ended_at),
        "event_ids": events,
    }


def list_runs(
    conn: Connection,
    limit: int,
    dag_id: str | None = None,
    state: str | None = None,
    *,
    offset: int = 0,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """Runs, newest first, with the ids of the events each consumed; `since`/`until` bound `queued_at`."""
    q = select(t.dag_run)
    if dag_id:
        q = q.where(t.dag_run.c.dag_id == dag_id)
    if state:
        q = q.where(t.dag_run.c.state == state)
    if since is not None:
        q = q.where(t.dag_run.c.queued_at >= since)
    if until is not None:
        q = q.where(t.dag_run.c.queued_at < until)
    rows = conn.execute(q.order_by(desc(t.dag_run.c.id)).limit(limit).offset(offset)).all()
    events = _events_of_runs(conn, [int(r.id) for r in rows])
    return [_run_dict(r, events.get(int(r.id), [])) for r in rows]


def get_run(conn: Connection, run_id: str) -> dict[str, Any] | None:
    """One run with its task instances."""
    r = conn.execute(select(t.dag_run).where(t.dag_run.c.run_id == run_id)).first()
    if r is None:
        return None
    run = _run_dict(r, _events_of_runs(conn, [int(r.id)]).get(int(r.id), []))
    ti = t.task_instance
    run["tasks"] = [
        {
            "task_id": x.task_id,
            "state": x.state,
            "try_number": x.try_number,
            "max_tries": x.max_tries,
            "started_at": _iso(x.started_at),
            "ended_at": _iso(x.ended_at),
            "result": x.result,
            "error": x.error,
            "hostname": x.hostname,
        }
        for x in conn.execute(select(ti).where(ti.c.run_pk == r.id).order_by(ti.c.id))
    ]
    return run


def task_log(conn: Connection, run_id: str, task_id: str) -> dict[str, Any] | None:
    """The log, state and error of one task instance."""
    ti, dr = t.task_instance, t.dag_run
    r = conn.execute(
        select(ti.c.log, ti.c.state, ti.c.error, ti.c.try_number)
        .join(dr, dr.c.id == ti.c.run_pk)
        .where(dr.c.run_id == run_id, ti.c.task_id == task_id)
    ).first()
    if r is None:
        return None
    return {
        "run_id": run_id,
        "task_id": task_id,
        "state": r.state,
        "try_number": r.try_number,
        "error": r.error,
        "log": r.log or "",
    }


def list_assets(conn: Connection, limit: int, *, offset: int = 0) -> list[dict[str, Any]]:
    """Assets with the DAGs scheduled on them."""
    consumers: dict[int, list[str]] = defaultdict(list)
    for row in conn.execute(select(t.dag_schedule_asset)):
        consumers[int(row.asset_id)].append(row.dag_id)
    rows = conn.execute(select(t.asset).order_by(t.asset.c.name).limit(limit).offset(offset)).all()
    return [
        {"id": int(r.id), "name": r.name, "uri": r.uri, "consumers": sorted(consumers.get(int(r.id), []))} for r in rows
    ]


def list_events(
    conn: Connection,
    limit: int,
    asset: str | None = None,
    *,
    offset: int = 0,
    source: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """Asset events, newest first, with the runs each caused.

    `source` matches exactly ("api", "cli", "watcher:3", "task:DAG.TASK") or, ending
    in ":", every source of that kind ("watcher:").
    """
    ae, a = t.asset_event, t.asset
    q = select(ae.c.id, ae.c.timestamp, ae.c.extra, ae.c.source, a.c.name).join(a, a.c.id == ae.c.asset_id)
    if asset:
        q = q.where(a.c.name == asset)
    if source:
        q = q.where(ae.c.source.startswith(source, autoescape=True) if source.endswith(":") else ae.c.source == source)
    if since is not None:
        q = q.where(ae.c.timestamp >= since)
    if until is not None:
        q = q.where(ae.c.timestamp < until)
    rows = conn.execute(q.order_by(desc(ae.c.id)).limit(limit).offset(offset)).all()
    runs: dict[int, list[str]] = defaultdict(list)
    ids = [int(r.id) for r in rows]
    if ids:
        for x in conn.execute(
            select(t.dag_run_event.c.event_id, t.dag_run.c.run_id)
            .join(t.dag_run, t.dag_run.c.id == t.dag_run_event.c.run_pk)
            .where(t.dag_run_event.c.event_id.in_(ids))
        ):
            runs[int(x.event_id)].append(x.run_id)
    return [
        {
            "id": int(r.id),
            "asset": r.name,
            "timestamp": _iso(r.timestamp),
            "source": r.source,
            "extra": r.extra,
            "run_ids": runs.get(int(r.id), []),
        }
        for r in rows
    ]


def list_watchers(conn: Connection, limit: int, *, offset: int = 0) -> list[dict[str, Any]]:
    """Watchers with their state, counters, lag and last error."""
    w, a = t.watcher, t.asset
    rows = conn.execute(
        select(w, a.c.name.label("asset"))
        .join(a, a.c.id == w.c.asset_id)
        .where(w.c.is_active)
        .order_by(a.c.name, w.c.name)
        .limit(limit)
        .offset(offset)
    ).all()
    return [
        {
            "id": int(r.id),
            "asset": r.asset,
            "name": r.name,
            "url": (r.trigger or {}).get("url"),
            "state": r.state,
            "last_message_at": _iso(r.last_message_at),
            "last_error": r.last_error,
            "received": r.received,
            "events": r.events,
            "skipped": r.skipped,
            "deduped": r.deduped,
            "dead_lettered": r.dead_lettered,
            "lag": r.lag,
        }
        for r in rows
    ]


def list_dead_letters(
    conn: Connection, limit: int, *, offset: int = 0, watcher_id: int | None = None
) -> list[dict[str, Any]]:
    """Messages that could not become events, with their reasons."""
    d = t.dead_letter
    q = select(d)
    if watcher_id is not None:
        q = q.where(d.c.watcher_id == watcher_id)
    rows = conn.execute(q.order_by(desc(d.c.id)).limit(limit).offset(offset)).all()
    return [_dead_letter_dict(r) for r in rows]


def _dead_letter_dict(r: Any) -> dict[str, Any]:
    body = bytes(r.body)
    try:
        text, encoding = body.decode("utf-8"), None
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(body).decode("ascii"), "base64"
    return {
        "id": int(r.id),
        "watcher_id": r.watcher_id,
        "source": r.source,
        "error": r.error,
        "body": text,
        "body_encoding": encoding,
        "headers": r.headers,
        "message": r.message,
        "created_at": _iso(r.created_at),
        "replayed_at": _iso(r.replayed_at),
        "replay_requested_at": _iso(r.replay_requested_at),
    }


# -- read models the API and UI add ---------------------------------------------------------


def last_runs_of_dags(conn: Connection, dag_ids: list[str], per_dag: int) -> dict[str, list[dict[str, Any]]]:
    """The newest `per_dag` runs of each DAG (id, state, times), newest first."""
    dr = t.dag_run
    found: dict[str, list[dict[str, Any]]] = {d: [] for d in dag_ids}
    if not dag_ids or per_dag <= 0:
        return found
    ranked = select(
        dr.c.run_id,
        dr.c.dag_id,
        dr.c.state,
        dr.c.queued_at,
        dr.c.ended_at,
        func.row_number().over(partition_by=dr.c.dag_id, order_by=desc(dr.c.id)).label("n"),
    ).where(dr.c.dag_id.in_(dag_ids))
    sub = ranked.subquery()
    for r in conn.execute(select(sub).where(sub.c.n <= per_dag).order_by(sub.c.dag_id, sub.c.n)):
        found[r.dag_id].append(
            {"run_id": r.run_id, "state": r.state, "queued_at": _iso(r.queued_at), "ended_at": _iso(r.ended_at)}
        )
    return found


def assets_of_dags(conn: Connection, dag_ids: list[str]) -> dict[str, list[str]]:
    """The assets each DAG is scheduled on, by name."""
    found: dict[str, list[str]] = {d: [] for d in dag_ids}
    if dag_ids:
        rows = conn.execute(
            select(t.dag_schedule_asset.c.dag_id, t.asset.c.name)
            .join(t.asset, t.asset.c.id == t.dag_schedule_asset.c.asset_id)
            .where(t.dag_schedule_asset.c.dag_id.in_(dag_ids))
            .order_by(t.asset.c.name)
        )
        for r in rows:
            found[r.dag_id].append(r.name)
    return found


def events_by_id(conn: Connection, event_ids: list[int]) -> list[dict[str, Any]]:
    """Events (with asset name, source, extra, and the runs each caused), in id order."""
    if not event_ids:
        return []
    ae, a = t.asset_event, t.asset
    rows = conn.execute(
        select(ae.c.id, ae.c.timestamp, ae.c.extra, ae.c.source, ae.c.dedupe_key, a.c.name)
        .join(a, a.c.id == ae.c.asset_id)
        .where(ae.c.id.in_(event_ids))
        .order_by(ae.c.id)
    ).all()
    runs = runs_of_events(conn, [int(r.id) for r in rows])
    return [
        {
            "id": int(r.id),
            "asset": r.name,
            "timestamp": _iso(r.timestamp),
            "source": r.source,
            "dedupe_key": r.dedupe_key,
            "extra": r.extra,
            "runs": runs.get(int(r.id), []),
        }
        for r in rows
    ]


def get_event(conn: Connection, event_id: int) -> dict[str, Any] | None:
    """One event with the runs it caused (run id, DAG, state)."""
    found = events_by_id(conn, [event_id])
    return found[0] if found else None


def runs_of_events(conn: Connection, event_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The runs each event caused: run id, DAG and state, oldest first."""
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if event_ids:
        dre, dr = t.dag_run_event, t.dag_run
        for x in conn.execute(
            select(dre.c.event_id, dr.c.run_id, dr.c.dag_id, dr.c.state)
            .join(dr, dr.c.id == dre.c.run_pk)
            .where(dre.c.event_id.in_(event_ids))
            .order_by(dr.c.id)
        ):
            found[int(x.event_id)].append({"run_id": x.run_id, "dag_id": x.dag_id, "state": x.state})
    return found


def get_asset(conn: Connection, name: str) -> dict[str, Any] | None:
    """One asset: consumers, watchers, how many events and when the last one came."""
    a = conn.execute(select(t.asset).where(t.asset.c.name == name)).first()
    if a is None:
        return None
    consumers = sorted(
        conn.execute(select(t.dag_schedule_asset.c.dag_id).where(t.dag_schedule_asset.c.asset_id == a.id)).scalars()
    )
    watchers = list(
        conn.execute(
            select(t.watcher.c.name)
            .where(t.watcher.c.asset_id == a.id, t.watcher.c.is_active)
            .order_by(t.watcher.c.name)
        ).scalars()
    )
    count, last = conn.execute(
        select(func.count(), func.max(t.asset_event.c.timestamp)).where(t.asset_event.c.asset_id == a.id)
    ).one()
    return {
        "id": int(a.id),
        "name": a.name,
        "uri": a.uri,
        "consumers": consumers,
        "watchers": watchers,
        "event_count": int(count),
        "last_event_at": _iso(last),
    }


def event_counts(conn: Connection, asset: str, since: datetime, until: datetime, buckets: int) -> list[dict[str, Any]]:
    """How many events of `asset` arrived in each of `buckets` equal slices of [since, until)."""
    ae, a = t.asset_event, t.asset
    width = (until - since) / buckets
    counts = [0] * buckets
    stamps = conn.execute(
        select(ae.c.timestamp)
        .join(a, a.c.id == ae.c.asset_id)
        .where(a.c.name == asset, ae.c.timestamp >= since, ae.c.timestamp < until)
    ).scalars()
    for stamp in stamps:
        index = int((stamp - since) / width)
        counts[min(max(index, 0), buckets - 1)] += 1
    return [{"start": _iso(since + i * width), "count": c} for i, c in enumerate(counts)]


def get_dead_letter(conn: Connection, dead_letter_id: int) -> dict[str, Any] | None:
    """One dead letter."""
    r = conn.execute(select(t.dead_letter).where(t.dead_letter.c.id == dead_letter_id)).first()
    return None if r is None else _dead_letter_dict(r)


def get_watcher_names(conn: Connection) -> dict[int, str]:
    """`asset/watcher` by watcher id (for labelling counters and dead letters)."""
    w, a = t.watcher, t.asset
    return {
        int(r.id): f"{r.asset}/{r.name}"
        for r in conn.execute(select(w.c.id, w.c.name, a.c.name.label("asset")).join(a, a.c.id == w.c.asset_id))
    }


def run_states(conn: Connection) -> list[dict[str, Any]]:
    """How many runs each DAG has in each state."""
    dr = t.dag_run
    q = select(dr.c.dag_id, dr.c.state, func.count().label("n")).group_by(dr.c.dag_id, dr.c.state)
    return [{"dag_id": r.dag_id, "state": r.state, "count": int(r.n)} for r in conn.execute(q)]


def queue_backlog(conn: Connection, now: datetime) -> list[dict[str, Any]]:
    """Events waiting to become runs, per DAG, with the age of the oldest (queue lag)."""
    eq = t.event_queue
    rows = conn.execute(
        select(eq.c.dag_id, func.count().label("n"), func.min(eq.c.queued_at).label("oldest")).group_by(eq.c.dag_id)
    )
    out = []
    for r in rows:
        oldest = r.oldest
        age = (now - oldest).total_seconds() if oldest is not None else 0.0
        out.append({"dag_id": r.dag_id, "events": int(r.n), "oldest_age_seconds": max(age, 0.0)})
    return out


def dead_letter_counts(conn: Connection) -> dict[str, int]:
    """Dead letters stored, replayed, and waiting for a requested replay."""
    d = t.dead_letter
    total, replayed, requested = conn.execute(
        select(
            func.count(),
            func.count(d.c.replayed_at),
            func.count(d.c.replay_requested_at),
        )
    ).one()
    return {"total": int(total), "replayed": int(replayed), "requested": int(requested)}


def recent_latencies(conn: Connection, limit: int) -> list[tuple[float, float | None]]:
    """For the newest `limit` event-triggered runs: (event -> run queued, event -> first task start) seconds."""
    dr, dre, ae, ti = t.dag_run, t.dag_run_event, t.asset_event, t.task_instance
    runs = conn.execute(
        select(dr.c.id, dr.c.queued_at).where(dr.c.run_type == "asset_triggered").order_by(desc(dr.c.id)).limit(limit)
    ).all()
    if not runs:
        return []
    pks = [int(r.id) for r in runs]
    first_event: dict[int, datetime] = {}
    for r in conn.execute(
        select(dre.c.run_pk, ae.c.timestamp).join(ae, ae.c.id == dre.c.event_id).where(dre.c.run_pk.in_(pks))
    ):
        seen = first_event.get(int(r.run_pk))
        if seen is None or r.timestamp < seen:
            first_event[int(r.run_pk)] = r.timestamp
    first_start: dict[int, datetime] = {}
    for r in conn.execute(
        select(ti.c.run_pk, ti.c.started_at).where(ti.c.run_pk.in_(pks), ti.c.started_at.is_not(None))
    ):
        seen = first_start.get(int(r.run_pk))
        if seen is None or r.started_at < seen:
            first_start[int(r.run_pk)] = r.started_at
    out: list[tuple[float, float | None]] = []
    for r in runs:
        event_at = first_event.get(int(r.id))
        if event_at is None:
            continue
        started = first_start.get(int(r.id))
        out.append(
            (
                max((r.queued_at - event_at).total_seconds(), 0.0),
                max((started - event_at).total_seconds(), 0.0) if started is not None else None,
            )
        )
    return out


def dag_graphs(conn: Connection, dag_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each DAG's tasks with their upstream tasks, as `get_dag` gives them."""
    if not dag_ids:
        return {}
    rows = conn.execute(select(t.dag.c.dag_id, t.dag.c.tasks).where(t.dag.c.dag_id.in_(dag_ids)))
    return {r.dag_id: list(r.tasks or []) for r in rows}
