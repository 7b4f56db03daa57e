"""Request building: the one place that turns queued tries into what a worker needs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from herald.executors.records import TaskRequest, TaskResult
from herald.scheduler.mapping import run_xcoms
from herald.sdk.assets import Asset, AssetAlias, AssetNameRef, AssetUriRef
from herald.sdk.dag import DAG
from herald.store import aliases as store_aliases
from herald.store import runs as store_runs
from herald.store import tries as store_tries
from herald.store.states import TryState
from herald.store.storable import clean_text
from herald.store.types import utcnow

#: events of each inlet a try receives (`inlet_events[asset]`, newest last); HERALD_INLET_EVENTS_LIMIT
INLET_EVENTS_LIMIT = 100


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def build_requests(
    conn: Connection, dags: dict[str, DAG], ti_ids: list[int], *, inlet_events_limit: int = INLET_EVENTS_LIMIT
) -> list[TaskRequest]:
    """What workers need to run these tries: the run, its events, upstream results and XComs, limits.

    A few queries for the whole batch, never one per try.
    """
    if not ti_ids:
        return []
    rows = store_runs.for_requests(conn, ti_ids)
    events = store_aliases.events_of_runs(conn, {int(r.run_pk) for r in rows})
    inlets = _inlet_events(conn, dags, rows, inlet_events_limit)
    # A first try of a task without upstream tasks starts with its run: nothing of the
    # run has succeeded yet, so the common case needs no query for results.
    may_see = {
        int(r.run_pk)
        for r in rows
        if int(r.try_number) > 1
        or ((d := dags.get(r.dag_id)) is not None and r.task_id in d.tasks and d.tasks[r.task_id].upstream)
    }
    # A mapped task's values are lists in map index order (what its downstream tasks see).
    xcoms = run_xcoms(dags, store_tries.successes(conn, may_see))
    requests = []
    for r in rows:
        dag = dags.get(r.dag_id)
        task = dag.tasks.get(r.task_id) if dag else None
        run_xcom = xcoms.get(int(r.run_pk), {})
        upstream = task.upstream if task is not None else set()
        requests.append(
            TaskRequest(
                ti_id=int(r.id),
                dag_id=r.dag_id,
                task_id=r.task_id,
                try_number=int(r.try_number),
                run={
                    "run_id": r.run_id,
                    "dag_id": r.dag_id,
                    "run_type": r.run_type,
                    "conf": r.conf or {},
                    "start_date": r.started_at.isoformat() if r.started_at else None,
                    "logical_date": _iso(r.logical_date),
                    "data_interval_start": _iso(r.data_interval_start),
                    "data_interval_end": _iso(r.data_interval_end),
                },
                events=events.get(int(r.run_pk), []),
                upstream={k: v["return_value"] for k, v in run_xcom.items() if k in upstream},
                xcom=run_xcom,
                timeout=task.timeout if task else None,
                queue=task.queue if task else None,
                inlet_events=inlets.get((r.dag_id, r.task_id)),
                map_index=int(r.map_index),
                next_method=r.next_method,
                next_kwargs=dict(r.next_kwargs) if r.next_method and r.next_kwargs else None,
            )
        )
    return requests


def _inlet_events(
    conn: Connection, dags: dict[str, DAG], rows: Sequence[Any], limit: int
) -> dict[tuple[str, str], Any]:
    """The recent events of the inlets of each task among `rows` (only tasks with inlets cost a query)."""
    wanted: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    uris: set[str] = set()
    for r in rows:
        dag = dags.get(r.dag_id)
        task = dag.tasks.get(r.task_id) if dag else None
        if task is None or not task.inlets or (r.dag_id, r.task_id) in wanted:
            continue
        names: set[str] = set()
        aliases: set[str] = set()
        for inlet in task.inlets:
            if isinstance(inlet, Asset | AssetNameRef):
                names.add(inlet.name)
            elif isinstance(inlet, AssetAlias):
                aliases.add(inlet.name)
            elif isinstance(inlet, AssetUriRef):
                uris.add(inlet.uri)
        wanted[(r.dag_id, r.task_id)] = (names, aliases)
    if not wanted:
        return {}
    by_uri = store_aliases.asset_names_by_uri(conn, uris)
    found: dict[tuple[str, str], Any] = {}
    for key, (names, aliases) in wanted.items():
        dag = dags[key[0]]
        names |= {by_uri[i.uri] for i in dag.tasks[key[1]].inlets if isinstance(i, AssetUriRef) and i.uri in by_uri}
        found[key] = store_aliases.recent_events(conn, names, aliases, limit)
    return found


def build_requests_or_fail(
    conn: Connection, dags: dict[str, DAG], ti_ids: list[int], *, inlet_events_limit: int = INLET_EVENTS_LIMIT
) -> tuple[list[TaskRequest], list[TaskResult]]:
    """`build_requests`, where a try whose request cannot be built fails alone, with the reason.

    Stored data a request is made of (an event's payload, an upstream result) may
    be beyond what can be read back (nested too deep, written by an older Herald):
    the batch is then built again one try at a time, and each try that fails gets a
    failed result for the next pass to apply. One row never stops a pass.
    """
    try:
        return build_requests(conn, dags, ti_ids, inlet_events_limit=inlet_events_limit), []
    except Exception:
        pass
    built: list[TaskRequest] = []
    failed: list[TaskResult] = []
    for ti_id in ti_ids:
        try:
            built.extend(build_requests(conn, dags, [ti_id], inlet_events_limit=inlet_events_limit))
        except Exception as exc:
            error = clean_text(f"its request could not be built: {type(exc).__name__}: {exc}")
            failed.append(TaskResult(ti_id=ti_id, state=TryState.FAILED, ended_at=utcnow(), error=error))
    return built, failed
