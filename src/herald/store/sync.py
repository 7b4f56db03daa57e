"""Write a loaded DagBag to the database: DAGs, assets, watchers and import errors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, text, update

from herald.loader import DagBag
from herald.sdk.assets import Asset, AssetNameRef
from herald.sdk.dag import DAG, Task
from herald.sdk.masking import environment_secrets, mask_fields, mask_text
from herald.sdk.ticks import Ticks
from herald.sdk.watcher import AssetWatcher
from herald.store import aliases as store_aliases
from herald.store import runs as store_runs
from herald.store import tables as t
from herald.store import variables as store_variables
from herald.store.states import WatcherState
from herald.store.types import utcnow


@dataclass
class WatcherSpec:
    """A watcher as the triggerer runs it: its row id, its asset and its trigger."""

    id: int
    name: str
    asset_id: int
    asset_name: str
    watcher: AssetWatcher
    consumer_key: str


@dataclass
class Catalog:
    """What the running processes need to know after a sync."""

    asset_ids: dict[str, int] = field(default_factory=dict)
    asset_uris: dict[int, tuple[str, str]] = field(default_factory=dict)
    # asset id -> DAGs scheduled on it (active ones), to queue events for
    consumers: dict[int, list[str]] = field(default_factory=dict)
    watchers: list[WatcherSpec] = field(default_factory=list)


def dag_assets(dag: DAG) -> list[Asset]:
    """The assets a DAG's schedule mentions, and those whose events cancel its runs (`cancel_on=`):
    events of both are queued for the DAG (the scheduler tells them apart)."""
    condition = dag.schedule_condition
    scheduled = list(condition.iter_assets()) if condition is not None else []
    return scheduled + (list(dag.flow.cancel_on) if dag.flow is not None else [])


def serialise_tasks(dag: DAG) -> list[dict[str, Any]]:
    """The task graph as JSON, for listings and the API."""
    return [
        {
            "task_id": task.task_id,
            "upstream": sorted(task.upstream),
            "retries": task.retries,
            "retry_delay": task.retry_delay,
            "timeout": task.timeout,
            "outlets": [a.name for a in task.outlets],
            "queue": task.queue,
            "trigger_rule": task.trigger_rule,
            "operator": _operator_name(task),
            "mapped": task.mapped is not None,
            "doc_md": task.doc_md,
        }
        for task in dag.tasks.values()
    ]


def _operator_name(task: Task) -> str:
    if task.operator is not None:
        return type(task.operator).__name__
    if task.kind == "operator":
        return str(task.options["operator_class"].__name__)
    return f"@task.{task.kind}" if task.kind != "python" else "@task"


def _params_json(dag: DAG) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in dag.params.items():
        dump = getattr(value, "dump", None)
        out[key] = dump() if dump is not None else {"value": value}
    try:
        json.dumps(out)
    except (TypeError, ValueError):
        return {k: {"value": repr(v)} for k, v in dag.params.items()}
    return out


def _ensure_assets(conn: Connection, assets: dict[str, Asset], now: datetime) -> dict[str, int]:
    stored = {
        row.name: row for row in conn.execute(select(t.asset.c.id, t.asset.c.name, t.asset.c.group, t.asset.c.extra))
    }
    ids = {name: int(row.id) for name, row in stored.items()}
    for name, asset in assets.items():
        group, extra = asset.group, asset.extra or None
        if name not in ids:
            ids[name] = int(
                conn.execute(
                    insert(t.asset)
                    .values(name=name, uri=asset.uri or name, group=group, extra=extra, created_at=now)
                    .returning(t.asset.c.id)
                ).scalar_one()
            )
        elif (stored[name].group, stored[name].extra or None) != (group, extra):
            # The DAG file is the source of an asset's group and extra: the last sync wins.
            conn.execute(update(t.asset).where(t.asset.c.id == ids[name]).values(group=group, extra=extra))
    return ids


def sync_bag(engine: Engine, bag: DagBag) -> Catalog:
    """Record DAGs, assets, watchers and import errors; return the catalog to run with.

    Two watchers of one name on one asset with different triggers make an import
    error first (`refuse_watcher_conflicts`); import errors are masked
    (`mask_import_errors`) before they are stored or logged.
    """
    now = utcnow()
    refuse_watcher_conflicts(bag)
    assets: dict[str, Asset] = {}
    for dag in bag.dags.values():
        # inlets too: an asset only awaited (WaitForAssetEvent) has events emitted to it by name
        inlets = [i for task in dag.tasks.values() for i in task.inlets if isinstance(i, Asset)]
        for asset in [*dag_assets(dag), *dag.outlets(), *inlets]:
            assets.setdefault(asset.name, asset)
    catalog = Catalog()
    with engine.begin() as conn:
        catalog.asset_ids = _ensure_assets(conn, assets, now)
        catalog.asset_uris = {
            int(r.id): (r.name, r.uri) for r in conn.execute(select(t.asset.c.id, t.asset.c.name, t.asset.c.uri))
        }
        existing = {r.dag_id: r for r in conn.execute(select(t.dag.c.dag_id, t.dag.c.schedule, t.dag.c.next_cron_at))}
        for dag in bag.dags.values():
            values = {
                "fileloc": dag.fileloc or "",
                "description": dag.description,
                "schedule": dag.schedule_description(),
                "max_active_runs": dag.max_active_runs,
                "batch_max_events": dag.batch.max_events if dag.batch else None,
                "batch_max_wait": dag.batch.max_wait if dag.batch else None,
                "task_ids": list(dag.tasks),
                "tasks": serialise_tasks(dag),
                "is_active": True,
                "updated_at": now,
                "start_date": dag.start_date,
                "end_date": dag.end_date,
                "catchup": dag.catchup,
                "max_active_tasks": dag.max_active_tasks,
                "dagrun_timeout": dag.dagrun_timeout,
                "owner": dag.owner,
                "tags": list(dag.tags),
                "doc_md": dag.doc_md,
                "params": _params_json(dag),
                "warnings": list(dag.warnings),
            }
            old = existing.get(dag.dag_id)
            if dag.ticks and (old is None or old.next_cron_at is None or old.schedule != dag.schedule_description()):
                # a schedule goes on from its newest cron run, never repeats one (Airflow's
                # last automated data interval)
                last = store_runs.last_logical_date(conn, dag.dag_id) if old is not None else None
                values["next_cron_at"] = first_cron(dag, now, last)
            elif not dag.ticks:
                values["next_cron_at"] = None
            if old is None:
                paused = bool(dag.is_paused_upon_creation)
                conn.execute(insert(t.dag).values(dag_id=dag.dag_id, is_paused=paused, **values))
            else:
                conn.execute(update(t.dag).where(t.dag.c.dag_id == dag.dag_id).values(**values))
        gone = set(existing) - set(bag.dags)
        if gone:
            conn.execute(update(t.dag).where(t.dag.c.dag_id.in_(gone)).values(is_active=False, updated_at=now))
        conn.execute(delete(t.dag_schedule_asset))
        links: list[dict[str, Any]] = [
            {"dag_id": dag.dag_id, "asset_id": catalog.asset_ids[a.name]}
            for dag in bag.dags.values()
            for a in dag_assets(dag)
        ]
        links += _resolved_links(conn, bag, catalog, links)
        if links:
            conn.execute(insert(t.dag_schedule_asset), links)
        for link in links:
            catalog.consumers.setdefault(link["asset_id"], []).append(link["dag_id"])
        catalog.watchers = _sync_watchers(conn, bag, catalog.asset_ids, now)
        conn.execute(delete(t.import_error))
        mask_import_errors(conn, bag)
        if bag.errors:
            conn.execute(
                insert(t.import_error),
                [{"fileloc": path, "error": err, "timestamp": now} for path, err in bag.errors.items()],
            )
    return catalog


def refuse_watcher_conflicts(bag: DagBag) -> None:
    """Make two watchers of one name on one asset, with different triggers, an import error.

    The triggerer runs one consumer per (asset, watcher name): a second watcher of that
    name would never be consumed, its messages waiting with no error. The file of the
    later DAG (files in path order) gets an import error naming both DAGs and both
    files, and its DAGs are left out, as a file that fails to import. The same watcher
    (one `Asset` shared by two DAGs) or one with the same trigger is no conflict.
    """
    seen: dict[tuple[str, str], tuple[DAG, AssetWatcher]] = {}
    failed: dict[str, str] = {}
    for dag in bag.dags.values():
        for asset in dag_assets(dag):
            for w in asset.watchers:
                first = seen.setdefault((asset.name, w.name), (dag, w))
                if first[1] is w or _same_trigger(first[1], w):
                    continue
                other = first[0]
                where = (
                    f"DAGs {other.dag_id!r} and {dag.dag_id!r} in {dag.fileloc}"
                    if other.fileloc == dag.fileloc
                    else f"DAG {other.dag_id!r} in {other.fileloc} and DAG {dag.dag_id!r} in {dag.fileloc}"
                )
                failed.setdefault(
                    dag.fileloc or "",
                    f"ValueError: asset {asset.name!r} has two watchers named {w.name!r} with different "
                    f"triggers ({where}): only one would be consumed; give each watcher its own name\n",
                )
    for path, error in failed.items():
        bag.errors[path] = error
    bag.dags = {dag_id: dag for dag_id, dag in bag.dags.items() if (dag.fileloc or "") not in failed}


def _same_trigger(a: AssetWatcher, b: AssetWatcher) -> bool:
    try:
        return a.trigger.consumer_key() == b.trigger.consumer_key()
    except Exception:  # a user's trigger that cannot describe itself is not the same as another
        return False


def mask_import_errors(conn: Connection, bag: DagBag) -> None:
    """Mask the import errors of `bag` in place: URLs, quoted secrets, and the secret values known here.

    Known secrets are the environment's (`environment_secrets`: sensitive variables and
    connection passwords) and the sensitive variables of the database.
    """
    if not bag.errors:
        return
    known = environment_secrets() | store_variables.sensitive_values(conn)
    bag.errors = {path: mask_text(error, known) for path, error in bag.errors.items()}


def _resolved_links(
    conn: Connection, bag: DagBag, catalog: Catalog, links: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """DAGs scheduled on what resolves to assets: `Asset.ref(name=...)`, `Asset.ref(uri=...)`, and
    aliases (on every asset an event was emitted for through them, as Airflow resolves them)."""
    by_uri: dict[str, int] = {}
    for known_id, (_, uri) in sorted(catalog.asset_uris.items()):
        by_uri.setdefault(uri, known_id)
    have = {(x["dag_id"], x["asset_id"]) for x in links}
    extra: list[dict[str, Any]] = []
    schedules: dict[str, list[tuple[str, str]]] = {}
    for dag in bag.dags.values():
        condition = dag.schedule_condition
        if condition is None:
            continue
        schedules[dag.dag_id] = [(al.name, al.group) for al in condition.iter_asset_aliases()]
        for ref in condition.iter_asset_refs():
            asset_id = (
                catalog.asset_ids.get(ref.name)
                if isinstance(ref, AssetNameRef)
                else by_uri.get(getattr(ref, "uri", ""))
            )
            if asset_id is not None and (dag.dag_id, asset_id) not in have:
                have.add((dag.dag_id, asset_id))
                extra.append({"dag_id": dag.dag_id, "asset_id": asset_id})
    store_aliases.sync_schedules(conn, schedules)
    for asset_id, dag_ids in store_aliases.alias_consumers(conn).items():
        for dag_id in dag_ids:
            if dag_id in bag.dags and (dag_id, asset_id) not in have:
                have.add((dag_id, asset_id))
                extra.append({"dag_id": dag_id, "asset_id": asset_id})
    return extra


def _sync_watchers(conn: Connection, bag: DagBag, asset_ids: dict[str, int], now: datetime) -> list[WatcherSpec]:
    wanted: dict[tuple[int, str], tuple[Asset, AssetWatcher]] = {}
    for dag in bag.dags.values():
        for asset in dag_assets(dag):
            for w in asset.watchers:
                wanted.setdefault((asset_ids[asset.name], w.name), (asset, w))
    rows = {
        (int(r.asset_id), r.name): int(r.id)
        for r in conn.execute(select(t.watcher.c.id, t.watcher.c.asset_id, t.watcher.c.name))
    }
    specs: list[WatcherSpec] = []
    for (asset_id, name), (asset, w) in wanted.items():
        # whatever a trigger (a user's own, too) puts in its description, no secret is stored
        description = mask_fields(w.trigger.describe())
        key = w.trigger.consumer_key()
        if (asset_id, name) in rows:
            wid = rows[(asset_id, name)]
            conn.execute(
                update(t.watcher)
                .where(t.watcher.c.id == wid)
                .values(trigger=description, consumer_key=key, is_active=True, updated_at=now)
            )
        else:
            wid = int(
                conn.execute(
                    insert(t.watcher)
                    .values(
                        asset_id=asset_id,
                        name=name,
                        trigger=description,
                        consumer_key=key,
                        is_active=True,
                        state=WatcherState.STARTING,
                        received=0,
                        events=0,
                        skipped=0,
                        deduped=0,
                        dead_lettered=0,
                        updated_at=now,
                    )
                    .returning(t.watcher.c.id)
                ).scalar_one()
            )
        specs.append(WatcherSpec(wid, name, asset_id, asset.name, w, key))
    stale = set(rows) - set(wanted)
    for key_ in stale:
        conn.execute(
            update(t.watcher)
            .where(t.watcher.c.id == rows[key_])
            .values(is_active=False, state=WatcherState.STOPPED, updated_at=now)
        )
    return specs


def first_cron(dag: DAG, now: datetime, last: datetime | None = None) -> datetime | None:
    """The tick the next scheduled run of a DAG is for, as Airflow 3's trigger timetables pick it.

    `last` is the logical date of the DAG's newest scheduled run, if any. With `catchup=True`
    it is the tick after `last`, else the first tick at or after `start_date`; with
    `catchup=False` (Airflow 3's default) the latest tick at or before now, unless that
    is before `start_date` or not after `last`. `@once` is one run at `start_date`.
    None once past `end_date`. A tick at or before now is due at once.
    """
    ticks = dag.ticks
    assert ticks is not None
    if ticks.once:
        return None if last is not None or dag.start_date is None else after_end(dag, dag.start_date)
    tick: datetime | None
    if dag.catchup:
        if last is not None:
            tick = ticks.after(last)
        elif dag.start_date is not None:
            tick = ticks.at_or_after(dag.start_date)
        else:
            tick = ticks.first_run(now)
    else:
        candidates = [ticks.at_or_before(now)]
        if last is not None:
            candidates += [t for t in [ticks.after(last)] if t is not None]
        elif dag.start_date is None:
            candidates.append(ticks.first_run(now))
        if dag.start_date is not None:
            candidates.append(ticks.at_or_after(dag.start_date))
        tick = max(candidates)
    return after_end(dag, tick)


def after_end(dag: DAG, tick: datetime | None) -> datetime | None:
    """`tick`, or None when it is past the DAG's `end_date` (no run after it)."""
    if tick is None or (dag.end_date is not None and tick > dag.end_date):
        return None
    return tick


def next_cron(expression: str, after: datetime, timezone: str = "UTC") -> datetime:
    """The first time strictly after `after` that the cron expression names, read in `timezone` (UTC back)."""
    tick = Ticks(cron=expression, timezone=timezone).after(after)
    assert tick is not None
    return tick


def prev_cron(expression: str, at: datetime, timezone: str = "UTC") -> datetime:
    """The latest time at or before `at` that the cron expression names, read in `timezone` (UTC back)."""
    return Ticks(cron=expression, timezone=timezone).at_or_before(at)


#: an arbitrary constant: the PostgreSQL advisory lock that serialises DAG syncs
SYNC_LOCK = 7_236_401


def sync_locked(engine: Engine, bag: DagBag) -> Catalog:
    """`sync_bag`, one process at a time (several schedulers and triggerers sync the same folder)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": SYNC_LOCK})
            conn.commit()
            try:
                return sync_bag(engine, bag)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SYNC_LOCK})
                conn.commit()
    return sync_bag(engine, bag)
