"""Read models shared by the CLI and the API: plain dicts, newest first."""

from __future__ import annotations

import base64
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, LargeBinary, Text, case, cast, desc, func, null, or_, select

from herald.sdk.airflow_triggers import describe_trigger
from herald.sdk.triggers import DEFAULT_DELIVERY
from herald.store import callbacks as store_callbacks
from herald.store import tables as t
from herald.store import tries as store_tries
from herald.store import try_history
from herald.store.aliases import aliases_of_events
from herald.store.states import RunType, TryState
from herald.store.storable import PREVIEW_CHARS, clean_text, displayable, displayable_object


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- summaries: listings never carry a large field whole ---------------------------------------
#
# A listing shows a JSON column (an event's extra, a task's result) whole only when
# it is at most PREVIEW_CHARS bytes; a larger one is cut by the database itself (so a
# large row is never read for a listing) and shown as `*_preview` text with its
# size. The item's own endpoint (GET /events/ID, a task's log) has the whole value.


def _byte_length(conn: Connection, column: Any) -> Any:
    """The size in bytes of a JSON column's text, computed by the database."""
    text = cast(column, Text)
    if conn.dialect.name == "postgresql":
        return func.octet_length(text)
    return func.length(cast(text, LargeBinary))


def _json_summary_columns(conn: Connection, column: Any, name: str) -> list[Any]:
    """`name` (the value, when small), `name_head` (its text's start, when large), `name_size` (bytes)."""
    size = _byte_length(conn, column)
    small = size <= PREVIEW_CHARS
    return [
        case((small, column), else_=null()).label(name),
        case((small, null()), else_=func.substr(cast(column, Text), 1, PREVIEW_CHARS)).label(f"{name}_head"),
        size.label(f"{name}_size"),
    ]


def _json_summary(r: Any, name: str, *, as_object: bool) -> dict[str, Any]:
    """The fields a listing shows for a JSON column selected with `_json_summary_columns`."""
    head = getattr(r, f"{name}_head")
    size = getattr(r, f"{name}_size")
    if head is None:
        value = getattr(r, name)
        shown = displayable_object(value) if as_object else displayable(value)
        return {name: shown, f"{name}_size": None if size is None else int(size), f"{name}_preview": None}
    return {name: {} if as_object else None, f"{name}_size": int(size), f"{name}_preview": clean_text(head)}


def _body_text(body: bytes, cut: bool) -> tuple[str, str | None]:
    """A body as text (UTF-8), else base64; a `cut` body may end inside a character."""
    try:
        return body.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        if cut and exc.start >= len(body) - 3 and exc.reason == "unexpected end of data":
            return body[: exc.start].decode("utf-8"), None
        return base64.b64encode(body).decode("ascii"), "base64"


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
            "warnings": list(r.warnings or []),
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


def list_dag_warnings(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """The warnings of the active DAGs (Airflow arguments accepted without effect), one row each."""
    rows = conn.execute(
        select(t.dag.c.dag_id, t.dag.c.fileloc, t.dag.c.warnings).where(t.dag.c.is_active).order_by(t.dag.c.dag_id)
    ).all()
    found = [{"dag_id": r.dag_id, "fileloc": r.fileloc, "warning": w} for r in rows for w in (r.warnings or [])]
    return found[:limit]


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
        "conf": displayable_object(r.conf),
        "queued_at": _iso(r.queued_at),
        "started_at": _iso(r.started_at),
        "ended_at": _iso(r.ended_at),
        "logical_date": _iso(r.logical_date),
        "data_interval_start": _iso(r.data_interval_start),
        "data_interval_end": _iso(r.data_interval_end),
        "event_ids": events,
        "run_key": r.run_key,
        "priority": r.priority,
        "held_by": r.held_by,
        "held_until": _iso(r.held_until),
        "cancelled_by_event": r.cancelled_by_event,
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
    # never the logs, and a large result as a preview: `task_log` has both whole
    columns = [c for c in ti.c if c.name not in ("log", "result", "xcom")]
    result = _json_summary_columns(conn, ti.c.result, "result")
    rows = list(conn.execute(select(*columns, *result).where(ti.c.run_pk == r.id).order_by(ti.c.id)).all())
    # tasks in the order they were created, a mapped task's tries side by side by map index
    first: dict[str, int] = {}
    for x in rows:
        first.setdefault(x.task_id, int(x.id))
    rows.sort(key=lambda x: (first[x.task_id], x.map_index))
    requeues = store_tries.requeues_of(conn, (int(x.id) for x in rows))
    ended = try_history.of_run(conn, int(r.id))
    waiting = _waits_of(conn, [int(x.id) for x in rows if x.state == TryState.DEFERRED])
    run["tasks"] = [
        {
            "task_id": x.task_id,
            "map_index": x.map_index,
            "state": x.state,
            "try_number": x.try_number,
            "max_tries": x.max_tries,
            "started_at": _iso(x.started_at),
            "ended_at": _iso(x.ended_at),
            **_json_summary(x, "result", as_object=False),
            "error": x.error,
            "hostname": x.hostname,
            "requeues": [
                {
                    "try_number": q.try_number,
                    "reason": q.reason,
                    "hostname": q.hostname,
                    "requeued_at": _iso(q.requeued_at),
                }
                for q in requeues.get(int(x.id), [])
            ],
            "tries": [_try_dict(e) for e in ended.get((x.task_id, int(x.map_index)), [])],
            "waiting_for": waiting.get(int(x.id)),
        }
        for x in rows
    ]
    run["callbacks"] = [
        {
            "kind": c.kind,
            "reason": c.reason,
            "state": c.state,
            "attempts": c.attempts,
            "created_at": _iso(c.created_at),
            "ended_at": _iso(c.ended_at),
            "error": c.error,
            "log": c.log,
        }
        for c in store_callbacks.of_run(conn, int(r.id))
    ]
    return run


def _try_dict(e: Any) -> dict[str, Any]:
    """One ended try of a task's history, with how long it ran."""
    ran = (e.ended_at - e.started_at).total_seconds() if e.started_at and e.ended_at else None
    return {
        "try_number": int(e.try_number),
        "state": e.state,
        "reason": e.reason,
        "error": e.error,
        "hostname": e.hostname,
        "started_at": _iso(e.started_at),
        "ended_at": _iso(e.ended_at),
        "duration_seconds": None if ran is None else max(0.0, ran),
    }


def _waits_of(conn: Connection, ti_ids: list[int]) -> dict[int, dict[str, Any]]:
    """What each of these deferred tries waits for: the asset and match, the time, or the trigger (and the
    triggerer running it); and its deadline."""
    if not ti_ids:
        return {}
    w, a = t.task_wait, t.asset
    found: dict[int, dict[str, Any]] = {}
    for row in conn.execute(
        select(
            w.c.ti_id,
            w.c.match,
            w.c.deadline,
            a.c.name,
            w.c.trigger_classpath,
            w.c.trigger_kwargs,
            w.c.lease_owner,
            w.c.fired_at,
        )
        .select_from(w.outerjoin(a, a.c.id == w.c.asset_id))
        .where(w.c.ti_id.in_(ti_ids))
    ):
        found[int(row.ti_id)] = {
            "asset": row.name,
            "match": row.match,
            "deadline": _iso(row.deadline),
            "trigger": _trigger_text(row.trigger_classpath, row.trigger_kwargs),
            "triggerer": row.lease_owner if row.fired_at is None else None,
            "fired_at": _iso(row.fired_at),
        }
    return found


def _trigger_text(classpath: str | None, kwargs: Any) -> str | None:
    """A trigger wait's trigger in words, secrets masked (its classpath alone if its kwargs are odd)."""
    if classpath is None:
        return None
    try:
        return describe_trigger(classpath, kwargs or {})
    except Exception:  # stored by hand or by an older Herald: still show what it is
        return classpath


def task_log(conn: Connection, run_id: str, task_id: str, map_index: int | None = None) -> dict[str, Any] | None:
    """The log, state, error and whole result of one task instance.

    Of a mapped task: map index `map_index`, else the first.
    """
    ti, dr = t.task_instance, t.dag_run
    q = (
        select(ti.c.log, ti.c.state, ti.c.error, ti.c.try_number, ti.c.map_index, ti.c.result)
        .join(dr, dr.c.id == ti.c.run_pk)
        .where(dr.c.run_id == run_id, ti.c.task_id == task_id)
    )
    if map_index is not None:
        q = q.where(ti.c.map_index == map_index)
    r = conn.execute(q.order_by(ti.c.map_index)).first()
    if r is None:
        return None
    return {
        "run_id": run_id,
        "task_id": task_id,
        "map_index": r.map_index,
        "state": r.state,
        "try_number": r.try_number,
        "error": r.error,
        "log": r.log or "",
        "result": displayable(r.result),
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


def _source_columns() -> list[Any]:
    ae = t.asset_event
    return [ae.c.source_dag_id, ae.c.source_task_id, ae.c.source_run_id, ae.c.source_map_index]


def _source(r: Any, aliases: dict[int, list[dict[str, str]]]) -> dict[str, Any]:
    """Airflow's `source_*` of an event (None unless a task emitted it) and its aliases."""
    return {
        "source_dag_id": r.source_dag_id,
        "source_task_id": r.source_task_id,
        "source_run_id": r.source_run_id,
        "source_map_index": r.source_map_index,
        "source_aliases": aliases.get(int(r.id), []),
    }


def list_events(
    conn: Connection,
    limit: int,
    asset: str | None = None,
    *,
    offset: int = 0,
    source: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    contains: str | None = None,
) -> list[dict[str, Any]]:
    """Asset events, newest first, with the runs each caused; a large extra is a preview (`get_event`: whole).

    `source` matches exactly ("api", "cli", "watcher:3", "task:DAG.TASK") or, ending
    in ":", every source of that kind ("watcher:"). `contains` is a text the event's
    extra (its payload and message) holds as JSON, case-insensitive: a scan, meant for a
    person searching, bounded by `since` when given.
    """
    ae, a = t.asset_event, t.asset
    extra = _json_summary_columns(conn, ae.c.extra, "extra")
    q = select(ae.c.id, ae.c.timestamp, *extra, ae.c.source, *_source_columns(), a.c.name).join(
        a, a.c.id == ae.c.asset_id
    )
    if asset:
        q = q.where(a.c.name == asset)
    if source:
        q = q.where(ae.c.source.startswith(source, autoescape=True) if source.endswith(":") else ae.c.source == source)
    if since is not None:
        q = q.where(ae.c.timestamp >= since)
    if until is not None:
        q = q.where(ae.c.timestamp < until)
    if contains:
        q = q.where(func.lower(cast(ae.c.extra, Text)).contains(contains.lower(), autoescape=True))
    rows = conn.execute(q.order_by(desc(ae.c.id)).limit(limit).offset(offset)).all()
    runs: dict[int, list[str]] = defaultdict(list)
    ids = [int(r.id) for r in rows]
    aliases = aliases_of_events(conn, ids)
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
            **_json_summary(r, "extra", as_object=True),
            **_source(r, aliases),
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
            "delivery": (r.trigger or {}).get("delivery") or DEFAULT_DELIVERY,
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
    conn: Connection, limit: int, *, offset: int = 0, watcher_id: int | None = None, error: str | None = None
) -> list[dict[str, Any]]:
    """Messages that could not become events, with their reasons; each body a preview (`get_dead_letter`: whole).

    `error` keeps those whose reason contains that text (case-insensitive)."""
    d = t.dead_letter
    columns = [c for c in d.c if c.name != "body"]
    q = select(
        *columns,
        func.substr(d.c.body, 1, PREVIEW_CHARS, type_=LargeBinary).label("body"),
        func.length(d.c.body).label("stored"),
    )
    if watcher_id is not None:
        q = q.where(d.c.watcher_id == watcher_id)
    if error:
        q = q.where(func.lower(d.c.error).contains(error.lower(), autoescape=True))
    rows = conn.execute(q.order_by(desc(d.c.id)).limit(limit).offset(offset)).all()
    return [_dead_letter_dict(r, int(r.stored)) for r in rows]


def _dead_letter_dict(r: Any, stored: int | None = None) -> dict[str, Any]:
    """A dead letter; `stored` is the stored body's length when `r.body` holds only its start (a listing)."""
    body = bytes(r.body)
    shown_part = stored is not None and stored > len(body)
    text, encoding = _body_text(body, shown_part or bool(r.body_truncated))
    return {
        "id": int(r.id),
        "watcher_id": r.watcher_id,
        "source": r.source,
        "error": r.error,
        "body": text,
        "body_encoding": encoding,
        "body_size": int(r.body_size) if r.body_size is not None else (stored or len(body)),
        "body_truncated": bool(r.body_truncated),
        "body_preview": shown_part,
        "headers": displayable_object(r.headers),
        "message": displayable_object(r.message),
        "created_at": _iso(r.created_at),
        "replayed_at": _iso(r.replayed_at),
        "replay_requested_at": _iso(r.replay_requested_at),
        "replayed_event_id": r.replayed_event_id,
        "replay_failed_at": _iso(r.replay_failed_at),
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


def events_by_id(conn: Connection, event_ids: list[int], *, summary: bool = False) -> list[dict[str, Any]]:
    """Events (with asset name, source, extra, and the runs each caused), in id order.

    With `summary` (listings), an extra larger than a preview is shown as `extra_preview`
    text with its `extra_size`, cut by the database.
    """
    if not event_ids:
        return []
    ae, a = t.asset_event, t.asset
    extra = _json_summary_columns(conn, ae.c.extra, "extra") if summary else [ae.c.extra]
    rows = conn.execute(
        select(ae.c.id, ae.c.timestamp, *extra, ae.c.source, ae.c.dedupe_key, *_source_columns(), a.c.name)
        .join(a, a.c.id == ae.c.asset_id)
        .where(ae.c.id.in_(event_ids))
        .order_by(ae.c.id)
    ).all()
    runs = runs_of_events(conn, [int(r.id) for r in rows])
    aliases = aliases_of_events(conn, [int(r.id) for r in rows])
    return [
        {
            "id": int(r.id),
            "asset": r.name,
            "timestamp": _iso(r.timestamp),
            "source": r.source,
            "dedupe_key": r.dedupe_key,
            **(_json_summary(r, "extra", as_object=True) if summary else {"extra": displayable_object(r.extra)}),
            **_source(r, aliases),
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


def held_runs(conn: Connection) -> list[dict[str, Any]]:
    """Runs held queued, skipped or cancelled by flow control, per DAG, state and rule
    ("cancelled by run X" counted as "cancelled_by_run", "cancelled by event N" as "cancel_on")."""
    dr = t.dag_run
    q = (
        select(dr.c.dag_id, dr.c.state, dr.c.held_by, func.count().label("n"))
        .where(dr.c.held_by.is_not(None))
        .group_by(dr.c.dag_id, dr.c.state, dr.c.held_by)
    )
    found: dict[tuple[str, str, str], int] = defaultdict(int)
    for r in conn.execute(q):
        rule = str(r.held_by)
        if rule.startswith("cancelled by run"):
            rule = "cancelled_by_run"
        elif rule.startswith("cancelled by event"):
            rule = "cancel_on"
        found[(r.dag_id, r.state, rule)] += int(r.n)
    return [{"dag_id": d, "state": s, "held_by": h, "count": n} for (d, s, h), n in sorted(found.items())]


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
        select(dr.c.id, dr.c.queued_at)
        .where(dr.c.run_type == RunType.ASSET_TRIGGERED)
        .order_by(desc(dr.c.id))
        .limit(limit)
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


def asset_id(conn: Connection, name: str) -> int | None:
    """The id of the asset `name`, or None."""
    found = conn.execute(select(t.asset.c.id).where(t.asset.c.name == name)).scalar()
    return None if found is None else int(found)


def asset_names(conn: Connection, limit: int = 20) -> list[str]:
    """Asset names, sorted (for an error that names what exists)."""
    return [str(n) for n in conn.execute(select(t.asset.c.name).order_by(t.asset.c.name).limit(limit)).scalars()]


def event_asset_id(conn: Connection, event_id: int) -> int | None:
    """The asset id of event `event_id`, or None when there is no such event."""
    found = conn.execute(select(t.asset_event.c.asset_id).where(t.asset_event.c.id == event_id)).scalar()
    return None if found is None else int(found)


def event_by_dedupe_key(conn: Connection, source: str, dedupe_key: str) -> tuple[int, int, Any] | None:
    """`(event id, asset id, extra)` of the event of `source` with `dedupe_key`, or None."""
    ae = t.asset_event
    row = conn.execute(
        select(ae.c.id, ae.c.asset_id, ae.c.extra).where(ae.c.source == source, ae.c.dedupe_key == dedupe_key)
    ).first()
    return None if row is None else (int(row.id), int(row.asset_id), row.extra)


def run_exists(conn: Connection, run_id: str) -> bool:
    """True when there is a run `run_id`."""
    return conn.execute(select(t.dag_run.c.id).where(t.dag_run.c.run_id == run_id)).first() is not None


def runs_matching(conn: Connection, text: str, limit: int) -> list[str]:
    """Run ids, newest first, that begin with `text` or whose tag (their last 8 characters) does."""
    dr = t.dag_run
    tag = func.substr(dr.c.run_id, func.length(dr.c.run_id) - 7)
    rows = conn.execute(
        select(dr.c.run_id)
        .where(or_(dr.c.run_id.startswith(text, autoescape=True), tag.startswith(text, autoescape=True)))
        .order_by(desc(dr.c.id))
        .limit(limit)
    ).scalars()
    return [str(r) for r in rows]


def run_tries(conn: Connection, run_id: str) -> tuple[int, str, str, list[dict[str, Any]]] | None:
    """`(run pk, dag id, run state, tries)` of a run, each try `{id, task_id, state, try_number}`; None if unknown."""
    dr, ti = t.dag_run, t.task_instance
    run = conn.execute(select(dr.c.id, dr.c.dag_id, dr.c.state).where(dr.c.run_id == run_id)).first()
    if run is None:
        return None
    rows = conn.execute(
        select(ti.c.id, ti.c.task_id, ti.c.map_index, ti.c.state, ti.c.try_number).where(ti.c.run_pk == run.id)
    ).all()
    tries = [
        {
            "id": int(r.id),
            "task_id": r.task_id,
            "map_index": int(r.map_index),
            "state": r.state,
            "try_number": int(r.try_number),
        }
        for r in rows
    ]
    return int(run.id), str(run.dag_id), str(run.state), tries


def list_triggerers(conn: Connection, alive_within: float, limit: int = 1000) -> list[dict[str, Any]]:
    """Every triggerer seen lately: heartbeat, alive or not, the watchers it holds and those it reads.

    `leases` are the watchers whose lease it holds (only it reads a non-shareable
    one); `consuming` every watcher it reads, shareable ones included (those
    several triggerers read at once).
    """
    from datetime import timedelta

    from herald.store.types import utcnow

    now = utcnow()
    tr, w, a = t.triggerer, t.watcher, t.asset
    names = {
        int(r.id): f"{r.asset}/{r.name}"
        for r in conn.execute(
            select(w.c.id, w.c.name, a.c.name.label("asset")).join(a, a.c.id == w.c.asset_id).where(w.c.is_active)
        )
    }
    leases: dict[str, list[str]] = defaultdict(list)
    for wid, owner in conn.execute(
        select(w.c.id, w.c.lease_owner).where(w.c.is_active, w.c.lease_owner.is_not(None), w.c.lease_expires_at >= now)
    ):
        if int(wid) in names:
            leases[str(owner)].append(names[int(wid)])
    alive_since = now - timedelta(seconds=alive_within)
    return [
        {
            "name": r.name,
            "hostname": r.hostname,
            "pid": r.pid,
            "alive": r.heartbeat_at >= alive_since,
            "started_at": _iso(r.started_at),
            "heartbeat_at": _iso(r.heartbeat_at),
            "received": int(r.received),
            "leases": sorted(leases.get(r.name, [])),
            "consuming": sorted(names[int(i)] for i in (r.consuming or []) if int(i) in names),
        }
        for r in conn.execute(select(tr).order_by(tr.c.name).limit(limit))
    ]


def list_alerts(conn: Connection, limit: int, state: str | None = None) -> list[dict[str, Any]]:
    """Alert episodes that fired, newest first: what was wrong, since when, and whether it is resolved."""
    al = t.alert
    q = select(al).where(al.c.state != "pending").order_by(al.c.id.desc()).limit(limit)
    if state is not None:
        q = q.where(al.c.state == state)
    return [
        {
            "key": r.key,
            "episode": r.episode,
            "state": r.state,
            "summary": r.summary,
            "since": _iso(r.since),
            "fired_at": _iso(r.fired_at),
            "resolved_at": _iso(r.resolved_at),
            "detail": r.detail or {},
        }
        for r in conn.execute(q)
    ]
