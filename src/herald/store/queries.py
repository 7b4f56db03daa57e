"""Read models shared by the CLI and the API: plain dicts, newest first."""

from __future__ import annotations

import base64
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, desc, select

from herald.store import tables as t


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def list_dags(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """DAGs with their schedule, policy and whether they are paused."""
    rows = conn.execute(select(t.dag).where(t.dag.c.is_active).order_by(t.dag.c.dag_id).limit(limit)).all()
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


def list_import_errors(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """DAG files that failed to import, with their tracebacks."""
    rows = conn.execute(select(t.import_error).order_by(desc(t.import_error.c.id)).limit(limit)).all()
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
    conn: Connection, limit: int, dag_id: str | None = None, state: str | None = None
) -> list[dict[str, Any]]:
    """Runs, newest first, with the ids of the events each consumed."""
    q = select(t.dag_run)
    if dag_id:
        q = q.where(t.dag_run.c.dag_id == dag_id)
    if state:
        q = q.where(t.dag_run.c.state == state)
    rows = conn.execute(q.order_by(desc(t.dag_run.c.id)).limit(limit)).all()
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


def list_assets(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """Assets with the DAGs scheduled on them."""
    consumers: dict[int, list[str]] = defaultdict(list)
    for row in conn.execute(select(t.dag_schedule_asset)):
        consumers[int(row.asset_id)].append(row.dag_id)
    rows = conn.execute(select(t.asset).order_by(t.asset.c.name).limit(limit)).all()
    return [
        {"id": int(r.id), "name": r.name, "uri": r.uri, "consumers": sorted(consumers.get(int(r.id), []))} for r in rows
    ]


def list_events(conn: Connection, limit: int, asset: str | None = None) -> list[dict[str, Any]]:
    """Asset events, newest first, with the runs each caused."""
    ae, a = t.asset_event, t.asset
    q = select(ae.c.id, ae.c.timestamp, ae.c.extra, ae.c.source, a.c.name).join(a, a.c.id == ae.c.asset_id)
    if asset:
        q = q.where(a.c.name == asset)
    rows = conn.execute(q.order_by(desc(ae.c.id)).limit(limit)).all()
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


def list_watchers(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """Watchers with their state, counters, lag and last error."""
    w, a = t.watcher, t.asset
    rows = conn.execute(
        select(w, a.c.name.label("asset"))
        .join(a, a.c.id == w.c.asset_id)
        .where(w.c.is_active)
        .order_by(a.c.name, w.c.name)
        .limit(limit)
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


def list_dead_letters(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """Messages that could not become events, with their reasons."""
    d = t.dead_letter
    rows = conn.execute(select(d).order_by(desc(d.c.id)).limit(limit)).all()
    out = []
    for r in rows:
        body = bytes(r.body)
        try:
            text, encoding = body.decode("utf-8"), None
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(body).decode("ascii"), "base64"
        out.append(
            {
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
            }
        )
    return out
