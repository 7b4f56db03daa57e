"""Asset aliases and the events tasks emit: every write to the alias tables, and the event reads tasks get.

An alias resolves to the assets events were emitted for through it
(`asset_alias_asset`); a DAG scheduled on the alias (`dag_schedule_alias`) is
then scheduled on those assets, as Airflow re-parses such a DAG onto them.
`emit_task_events` is the one writer of events made by tasks: their `source_*`
columns, the assets an alias event creates, and the aliases of each event.

What would violate this: an INSERT into `asset_alias*` or `dag_schedule_alias`
outside this module, or a task event written without its `source_*` columns.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from herald.store import tables as t
from herald.store.events import insert_events, upsert_ignore
from herald.store.sql import member, per_dialect

ae, a, al = t.asset_event, t.asset, t.asset_alias
aaa, aae = t.asset_alias_asset, t.asset_alias_event


@dataclass(frozen=True)
class TaskEvent:
    """An asset event a succeeded task emits: through its outlets, or through aliases.

    `asset` is the asset's wire form (`name`, `uri`, `group`, `extra`): an alias
    event may name an asset Herald has never seen, which is then created.
    """

    asset: Mapping[str, Any]
    extra: dict[str, Any]
    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1
    aliases: tuple[tuple[str, str], ...] = ()  # (name, group)
    dedupe_key: str = ""

    @property
    def source(self) -> str:
        """`AssetEvent.source` of a task's event: `task:DAG.TASK`."""
        return f"task:{self.dag_id}.{self.task_id}"


@dataclass
class Emitted:
    """What `emit_task_events` stored: events made, and the assets and alias links it created."""

    events: int = 0
    new_assets: dict[str, int] = field(default_factory=dict)
    resolved: dict[str, set[str]] = field(default_factory=dict)  # alias name -> asset names newly linked


def ensure_aliases(conn: Connection, aliases: Iterable[tuple[str, str]]) -> dict[str, int]:
    """The ids of these aliases (name, group), created when new."""
    wanted = dict(aliases)
    if not wanted:
        return {}
    rows = [{"name": name, "group": group} for name, group in wanted.items()]
    conn.execute(upsert_ignore(conn, al), rows)
    return {r.name: int(r.id) for r in conn.execute(select(al.c.id, al.c.name).where(al.c.name.in_(sorted(wanted))))}


def sync_schedules(conn: Connection, schedules: Mapping[str, Sequence[tuple[str, str]]]) -> None:
    """Record which DAGs are scheduled on which aliases (dag id -> aliases), replacing what was there."""
    ids = ensure_aliases(conn, (alias for found in schedules.values() for alias in found))
    conn.execute(delete(t.dag_schedule_alias))
    rows = [
        {"dag_id": dag_id, "alias_id": ids[name]}
        for dag_id, found in schedules.items()
        for name in dict(found)  # one row per alias, however often the schedule names it
    ]
    if rows:
        conn.execute(insert(t.dag_schedule_alias), rows)


def resolved_assets(conn: Connection, alias_names: Iterable[str]) -> dict[str, set[str]]:
    """The names of the assets each alias resolved to (events were emitted for them through it)."""
    names = sorted(set(alias_names))
    found: dict[str, set[str]] = {name: set() for name in names}
    if not names:
        return found
    rows = conn.execute(
        select(al.c.name.label("alias"), a.c.name.label("asset"))
        .join(aaa, aaa.c.alias_id == al.c.id)
        .join(a, a.c.id == aaa.c.asset_id)
        .where(al.c.name.in_(names))
    )
    for row in rows:
        found[row.alias].add(row.asset)
    return found


def alias_consumers(conn: Connection) -> dict[int, list[str]]:
    """Asset id -> the DAGs scheduled on an alias that resolved to it (for queueing the asset's events)."""
    sa = t.dag_schedule_alias
    found: dict[int, list[str]] = defaultdict(list)
    for row in conn.execute(
        select(aaa.c.asset_id, sa.c.dag_id).join(sa, sa.c.alias_id == aaa.c.alias_id).order_by(sa.c.dag_id)
    ):
        if row.dag_id not in found[int(row.asset_id)]:
            found[int(row.asset_id)].append(row.dag_id)
    return dict(found)


def _ensure_assets(
    conn: Connection, assets: Mapping[str, Mapping[str, Any]], now: datetime
) -> tuple[dict[str, int], dict[str, int]]:
    """Ids of these assets (by name), creating the missing ones; returns (all ids, the new ones)."""
    names = sorted(assets)
    ids = {r.name: int(r.id) for r in conn.execute(select(a.c.id, a.c.name).where(a.c.name.in_(names)))}
    missing = [n for n in names if n not in ids]
    if missing:
        conn.execute(
            upsert_ignore(conn, a),
            [
                {
                    "name": n,
                    "uri": assets[n].get("uri") or n,
                    "group": assets[n].get("group") or "asset",
                    "extra": assets[n].get("extra") or None,
                    "created_at": now,
                }
                for n in missing
            ],
        )
        ids = {r.name: int(r.id) for r in conn.execute(select(a.c.id, a.c.name).where(a.c.name.in_(names)))}
    return ids, {n: ids[n] for n in missing}


def emit_task_events(
    conn: Connection,
    events: Sequence[TaskEvent],
    consumers_of: Callable[[int, Mapping[str, Any], tuple[str, ...]], Sequence[str]],
    now: datetime,
) -> Emitted:
    """Store the events succeeded tasks emit, inside the caller's transaction.

    Creates the assets alias events name when they are new, links each alias to
    its assets and events, and queues each new event for the DAGs
    `consumers_of(asset_id, asset, alias_names)` returns. An event already stored
    (the same task, run and dedupe key: a result applied twice) is skipped.
    """
    out = Emitted()
    if not events:
        return out
    assets = {str(e.asset["name"]): e.asset for e in events}
    ids, out.new_assets = _ensure_assets(conn, assets, now)
    alias_ids = ensure_aliases(conn, (alias for e in events for alias in e.aliases))
    plain: list[dict[str, Any]] = []
    queue: dict[int, list[str]] = {}
    for e in events:
        asset_id = ids[str(e.asset["name"])]
        row = {
            "asset_id": asset_id,
            "source": e.source,
            "dedupe_key": e.dedupe_key or e.run_id,
            "extra": e.extra,
            "timestamp": now,
            "source_dag_id": e.dag_id,
            "source_task_id": e.task_id,
            "source_run_id": e.run_id,
            "source_map_index": e.map_index,
        }
        names = tuple(name for name, _ in e.aliases)
        consumers = list(consumers_of(asset_id, e.asset, names))
        if not e.aliases:
            plain.append(row)
            queue.setdefault(asset_id, consumers)
            continue
        # One at a time: the new event's id links it to its aliases (alias events are few).
        created = insert_events(conn, [row], {asset_id: consumers}, now)
        out.events += len(created)
        for event_id, _, _ in created:
            conn.execute(insert(aae), [{"alias_id": alias_ids[n], "event_id": event_id} for n in dict.fromkeys(names)])
        links = [{"alias_id": alias_ids[n], "asset_id": asset_id} for n in dict.fromkeys(names)]
        known = {
            int(r.alias_id)
            for r in conn.execute(
                select(aaa.c.alias_id).where(
                    aaa.c.asset_id == asset_id, aaa.c.alias_id.in_([x["alias_id"] for x in links])
                )
            )
        }
        fresh = [x for x in links if x["alias_id"] not in known]
        if fresh:
            conn.execute(upsert_ignore(conn, aaa), fresh)
            by_id = {v: k for k, v in alias_ids.items()}
            for x in fresh:
                out.resolved.setdefault(by_id[x["alias_id"]], set()).add(str(e.asset["name"]))
    if plain:
        out.events += len(insert_events(conn, plain, queue, now))
    return out


def aliases_of_events(conn: Connection, event_ids: Iterable[int]) -> dict[int, list[dict[str, str]]]:
    """Event id -> the aliases it was emitted through (`{"name", "group"}`), for the events given."""
    ids = sorted(set(event_ids))
    found: dict[int, list[dict[str, str]]] = defaultdict(list)
    for i in range(0, len(ids), 500):
        for row in conn.execute(_aliases_of_events(conn), {"ids": ids[i : i + 500]}):
            found[int(row.event_id)].append({"name": row.name, "group": row.group})
    return dict(found)


@per_dialect
def _aliases_of_events(dialect: str) -> Any:
    return (
        select(aae.c.event_id, al.c.name, al.c.group)
        .join(al, al.c.id == aae.c.alias_id)
        .where(member(dialect, aae.c.event_id, "ids"))
        .order_by(aae.c.event_id, al.c.name)
    )


def event_wire(row: Any, aliases: Mapping[int, list[dict[str, str]]]) -> dict[str, Any]:
    """An event row (joined with its asset) in `AssetEvent.to_wire`'s form."""
    return {
        "id": int(row.id),
        "asset": {"name": row.name, "uri": row.uri, "group": row.group, "extra": row.asset_extra or {}},
        "timestamp": row.timestamp.isoformat(),
        "extra": row.extra or {},
        "source": row.source,
        "source_dag_id": row.source_dag_id,
        "source_task_id": row.source_task_id,
        "source_run_id": row.source_run_id,
        "source_map_index": row.source_map_index,
        "source_aliases": aliases.get(int(row.id), []),
    }


def _event_columns() -> list[Any]:
    return [
        ae.c.id,
        ae.c.timestamp,
        ae.c.extra,
        ae.c.source,
        ae.c.source_dag_id,
        ae.c.source_task_id,
        ae.c.source_run_id,
        ae.c.source_map_index,
        a.c.name,
        a.c.uri,
        a.c.group,
        a.c.extra.label("asset_extra"),
    ]


def recent_events(
    conn: Connection, asset_names: Iterable[str], alias_names: Iterable[str], limit: int
) -> dict[str, Any]:
    """The latest `limit` events of each asset and of each alias, oldest first (a try's `inlet_events`).

    Returns `{"assets": {NAME: {"asset": ..., "events": [...]}}, "aliases": {NAME: [...]}}`.
    """
    assets: dict[str, Any] = {}
    rows_by_key: list[tuple[str, str, list[Any]]] = []
    for name in sorted(set(asset_names)):
        rows = conn.execute(
            select(*_event_columns())
            .join(a, a.c.id == ae.c.asset_id)
            .where(a.c.name == name)
            .order_by(ae.c.id.desc())
            .limit(limit)
        ).all()
        rows_by_key.append(("asset", name, list(reversed(rows))))
        stored = conn.execute(select(a.c.name, a.c.uri, a.c.group, a.c.extra).where(a.c.name == name)).first()
        if stored is not None:
            assets[name] = {
                "asset": {"name": stored.name, "uri": stored.uri, "group": stored.group, "extra": stored.extra or {}},
                "events": [],
            }
    for name in sorted(set(alias_names)):
        rows = conn.execute(
            select(*_event_columns())
            .join(a, a.c.id == ae.c.asset_id)
            .join(aae, aae.c.event_id == ae.c.id)
            .join(al, al.c.id == aae.c.alias_id)
            .where(al.c.name == name)
            .order_by(ae.c.id.desc())
            .limit(limit)
        ).all()
        rows_by_key.append(("alias", name, list(reversed(rows))))
    aliases_of = aliases_of_events(conn, (int(r.id) for _, _, rows in rows_by_key for r in rows))
    out: dict[str, Any] = {"assets": assets, "aliases": {}}
    for kind, name, rows in rows_by_key:
        wire = [event_wire(r, aliases_of) for r in rows]
        if kind == "asset":
            if name in assets:
                assets[name]["events"] = wire
        else:
            out["aliases"][name] = wire
    return out


def events_of_runs(conn: Connection, run_pks: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    """The events each run consumed, oldest first, in `AssetEvent.to_wire`'s form (a try's triggering events)."""
    pks = sorted(set(run_pks))
    if not pks:
        return {}
    rows = conn.execute(_events_of_runs(conn), {"pks": pks}).all()
    # only a task emits an event through aliases (`emit_task_events`): a watcher's event has none
    aliases_of = aliases_of_events(conn, (int(r.id) for r in rows if r.source_dag_id is not None))
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        found[int(r.run_pk)].append(event_wire(r, aliases_of))
    return dict(found)


@per_dialect
def _events_of_runs(dialect: str) -> Any:
    dre = t.dag_run_event
    return (
        select(dre.c.run_pk, *_event_columns())
        .join(ae, ae.c.id == dre.c.event_id)
        .join(a, a.c.id == ae.c.asset_id)
        .where(member(dialect, dre.c.run_pk, "pks"))
        .order_by(ae.c.id)
    )


def asset_names_by_uri(conn: Connection, uris: Iterable[str]) -> dict[str, str]:
    """URI -> name of the stored assets with these URIs (resolving `Asset.ref(uri=...)`)."""
    wanted = sorted(set(uris))
    if not wanted:
        return {}
    return {r.uri: r.name for r in conn.execute(select(a.c.name, a.c.uri).where(a.c.uri.in_(wanted)).order_by(a.c.id))}


def _map_suffix(origin: Mapping[str, Any]) -> str:
    """`#N` for a try of map index N (each map index emits its own events), else nothing."""
    map_index = int(origin.get("map_index", -1))
    return f"#{map_index}" if map_index >= 0 else ""


def alias_events(wire: Sequence[Mapping[str, Any]], origin: Mapping[str, Any]) -> list[TaskEvent]:
    """The events a try added through aliases (`AssetAliasEvent.to_wire` forms), one per asset and extra.

    As Airflow does, the same asset with the same extra added through several
    aliases is one event carrying all of them as its `source_aliases`.
    """
    import json

    grouped: dict[tuple[str, str], tuple[Mapping[str, Any], dict[str, Any], dict[str, str]]] = {}
    for item in wire:
        asset = item["asset"]
        extra = dict(item.get("extra") or {})
        key = (str(asset["name"]), json.dumps(extra, sort_keys=True, default=str))
        alias = item["alias"]
        entry = grouped.setdefault(key, (asset, extra, {}))
        entry[2].setdefault(str(alias["name"]), str(alias.get("group") or ""))
    out = []
    for n, ((name, _), (asset, extra, aliases)) in enumerate(grouped.items()):
        out.append(
            TaskEvent(
                asset=asset,
                extra=extra,
                dag_id=str(origin["dag_id"]),
                task_id=str(origin["task_id"]),
                run_id=str(origin["run_id"]),
                map_index=int(origin.get("map_index", -1)),
                aliases=tuple(aliases.items()),
                # unique per try and event: a result applied twice makes no second event
                dedupe_key=f"{origin['run_id']}{_map_suffix(origin)}#alias{n}:{name}"[:500],
            )
        )
    return out


def asset_names(conn: Connection, asset_ids: Iterable[int]) -> dict[int, str]:
    """Id -> name of these assets."""
    ids = sorted(set(asset_ids))
    return {int(r.id): r.name for r in conn.execute(select(a.c.id, a.c.name).where(a.c.id.in_(ids)))} if ids else {}


def asset_uris(conn: Connection, asset_ids: Iterable[int]) -> dict[int, str]:
    """Id -> URI of these assets."""
    ids = sorted(set(asset_ids))
    return {int(r.id): r.uri for r in conn.execute(select(a.c.id, a.c.uri).where(a.c.id.in_(ids)))} if ids else {}
