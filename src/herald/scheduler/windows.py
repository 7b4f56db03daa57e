"""Runs of DAGs scheduled on a window (`(a & b).within(...)`) or an absence (`a.missing_for(...)`).

A window is planned from the DAG's queued events alone, each pass: per key, the
oldest event of each asset that came within the window of the others makes a
run; an event whose window has closed without its partners leaves the queue
without one. An absence turns each queued event into its key's "last seen"
(`asset_key_seen`) and makes one run per key silent for the whole span, once
per silence. Nothing is kept in memory: a restarted scheduler goes on from the
database.
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from herald.sdk.asset_windows import AssetAbsence, AssetWindow, key_of, timed
from herald.sdk.dag import DAG
from herald.store import aliases as store_aliases
from herald.store import runs as store_runs
from herald.store import windows as store_windows
from herald.store.states import RunType

__all__ = ["plan"]

log = logging.getLogger("herald.scheduler")

#: queued events read per pass; a larger backlog is taken over several passes
EVENT_SCAN = 5000
#: silent keys turned into runs per DAG and pass
SILENCE_SCAN = 1000


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def plan(
    conn: Connection, dags: dict[str, DAG], paused: set[str], now: datetime, asset_ids: dict[str, int]
) -> tuple[datetime | None, bool]:
    """Runs of the windowed and absence DAGs; returns when to look again, and whether more events wait."""
    wanted = [d for d, dag in dags.items() if d not in paused and timed(dag.asset_condition)]
    if not wanted:
        return None, False
    wanted = store_windows.lock_dags(conn, wanted)  # another scheduler plans the others now
    if not wanted:
        return None, False
    rows = store_runs.pending_events(conn, wanted, EVENT_SCAN)
    by_dag: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_dag[row.dag_id].append(row)
    extras = store_windows.event_extras(conn, (int(r.event_id) for r in rows))
    names = {v: k for k, v in asset_ids.items()}
    unknown = {int(r.asset_id) for r in rows} - set(names)
    if unknown:
        names.update(store_aliases.asset_names(conn, unknown))
    wake: datetime | None = None
    for dag_id in wanted:
        condition = dags[dag_id].asset_condition
        items = by_dag.get(dag_id, [])
        if isinstance(condition, AssetWindow):
            wake = _earliest(wake, _window(conn, dag_id, condition, items, extras, names, now))
        elif isinstance(condition, AssetAbsence):
            wake = _earliest(wake, _absence(conn, dag_id, condition, items, extras, now))
    return wake, len(rows) == EVENT_SCAN


def _window(
    conn: Connection,
    dag_id: str,
    window: AssetWindow,
    items: list[Any],
    extras: dict[int, dict[str, Any]],
    names: dict[int, str],
    now: datetime,
) -> datetime | None:
    """Runs of one windowed DAG from its queued events (oldest first); returns when the next window closes."""
    if not items:
        return None
    compiled = window.compiled_key()
    span = timedelta(seconds=window.seconds)
    wanted = [a.name for a in window.assets]
    open_: dict[str, dict[str, deque[Any]]] = {}
    matched: list[tuple[str, list[Any]]] = []
    dropped: list[int] = []
    for row in items:
        key = key_of(compiled, extras.get(int(row.event_id)))
        name = names.get(int(row.asset_id))
        if key is None or name not in wanted:
            dropped.append(int(row.id))  # an event without the key can never be matched
            continue
        slots = open_.setdefault(key, {n: deque() for n in wanted})
        for queue in slots.values():
            # partners older than the window before this event can never share a window with it
            while queue and row.queued_at - queue[0].queued_at > span:
                dropped.append(int(queue.popleft().id))
        slots[name].append(row)
        if all(slots.values()):
            matched.append((key, [slots[n].popleft() for n in wanted]))
    wake: datetime | None = None
    for slots in open_.values():
        for queue in slots.values():
            for row in queue:
                closes = row.queued_at + span
                if closes <= now:
                    dropped.append(int(row.id))
                else:
                    wake = _earliest(wake, closes)
    for key, events in matched:
        conf = {"key": key if window.key is not None else None, "within": window.seconds}
        (run_pk,) = store_runs.create_runs(conn, [dag_id], RunType.ASSET_TRIGGERED, now, conf)
        store_runs.link_events(conn, [(run_pk, int(e.event_id)) for e in events])
    store_runs.consume_events(conn, [int(e.id) for _, events in matched for e in events] + dropped)
    if dropped:
        log.info("DAG %s: %d event(s) left its window unmatched", dag_id, len(dropped))
    return wake


def _absence(
    conn: Connection,
    dag_id: str,
    absence: AssetAbsence,
    items: list[Any],
    extras: dict[int, dict[str, Any]],
    now: datetime,
) -> datetime | None:
    """Record the keys heard from, and make a run per key silent for the span; returns the next silence's end."""
    compiled = absence.compiled_key()
    latest: dict[str, tuple[datetime, int]] = {}
    for row in items:
        key = key_of(compiled, extras.get(int(row.event_id)))
        if key is None:
            continue
        seen = (row.queued_at, int(row.event_id))
        if key not in latest or seen[1] > latest[key][1]:
            latest[key] = seen
    store_windows.saw(conn, dag_id, latest)
    store_runs.consume_events(conn, [int(r.id) for r in items])
    span = timedelta(seconds=absence.seconds)
    for row in store_windows.silent(conn, dag_id, now - span, SILENCE_SCAN):
        if not store_windows.alert(conn, dag_id, row.key, int(row.last_event_id)):
            continue  # another scheduler made this silence's run
        conf = {
            "key": row.key if absence.key is not None else None,
            "last_seen": row.last_seen.isoformat(),
            "silent_for": absence.seconds,
            "asset": absence.asset.name,
        }
        (run_pk,) = store_runs.create_runs(conn, [dag_id], RunType.ASSET_TRIGGERED, now, conf)
        store_runs.link_events(conn, [(run_pk, int(row.last_event_id))])
        log.info("DAG %s: key %r silent since %s", dag_id, row.key, row.last_seen.isoformat())
    quiet = store_windows.next_silence(conn, dag_id)
    return quiet + span if quiet is not None else None
