"""Write a loaded DagBag to the database: DAGs, assets, watchers and import errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from herald.loader import DagBag
from herald.sdk.assets import Asset
from herald.sdk.dag import DAG
from herald.sdk.watcher import AssetWatcher
from herald.store import tables as t
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
    """The assets a DAG's schedule mentions."""
    condition = dag.asset_condition
    return list(condition.iter_assets()) if condition is not None else []


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
        }
        for task in dag.tasks.values()
    ]


def _ensure_assets(conn: Connection, assets: dict[str, Asset], now: datetime) -> dict[str, int]:
    ids = {row.name: int(row.id) for row in conn.execute(select(t.asset.c.id, t.asset.c.name))}
    for name, asset in assets.items():
        if name not in ids:
            ids[name] = int(
                conn.execute(
                    insert(t.asset).values(name=name, uri=asset.uri or name, created_at=now).returning(t.asset.c.id)
                ).scalar_one()
            )
    return ids


def sync_bag(engine: Engine, bag: DagBag) -> Catalog:
    """Record DAGs, assets, watchers and import errors; return the catalog to run with."""
    now = utcnow()
    assets: dict[str, Asset] = {}
    for dag in bag.dags.values():
        for asset in [*dag_assets(dag), *dag.outlets()]:
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
            }
            old = existing.get(dag.dag_id)
            if dag.cron and (old is None or old.next_cron_at is None or old.schedule != dag.cron):
                values["next_cron_at"] = next_cron(dag.cron, now)
            elif not dag.cron:
                values["next_cron_at"] = None
            if old is None:
                conn.execute(insert(t.dag).values(dag_id=dag.dag_id, is_paused=False, **values))
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
        if links:
            conn.execute(insert(t.dag_schedule_asset), links)
        for link in links:
            catalog.consumers.setdefault(link["asset_id"], []).append(link["dag_id"])
        catalog.watchers = _sync_watchers(conn, bag, catalog.asset_ids, now)
        conn.execute(delete(t.import_error))
        if bag.errors:
            conn.execute(
                insert(t.import_error),
                [{"fileloc": path, "error": err, "timestamp": now} for path, err in bag.errors.items()],
            )
    return catalog


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
        description = w.trigger.describe()
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
                        state="starting",
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
            .values(is_active=False, state="stopped", updated_at=now)
        )
    return specs


def next_cron(expression: str, after: datetime) -> datetime:
    """The first time strictly after `after` that the cron expression names (UTC)."""
    from croniter import croniter

    value: datetime = croniter(expression, after).get_next(datetime)
    return value
