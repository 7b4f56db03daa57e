"""Run creation: asset-triggered runs by each DAG's policy, cron runs, and starting queued runs.

Runs start within each DAG's `max_active_runs` and within the back-pressure
budget: runs beyond it stay queued in the database, not in memory, and start
as tries finish (each result wakes the scheduler).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from herald.scheduler import ends, flow
from herald.scheduler.policy import Pending, plan_runs
from herald.sdk.asset_windows import timed
from herald.sdk.assets import AssetUriRef, BaseAsset
from herald.sdk.dag import DAG
from herald.store import aliases as store_aliases
from herald.store import runs as store_runs
from herald.store import tries as store_tries
from herald.store.states import RunState, RunType, TryState
from herald.store.sync import after_end

#: events read per pass; a larger backlog is taken over several passes
EVENT_SCAN = 5000
RUN_SCAN = 2000
#: a cron DAG catching up keeps at most this many runs waiting to start
CATCHUP_QUEUE = 100


@dataclass
class Ready:
    """Tries of started runs: `ready` to queue (`store.tries.queue`), and `queued` already."""

    ready: list[int] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)

    def __iadd__(self, other: Ready) -> Ready:
        self.ready += other.ready
        self.queued += other.queued
        return self


@dataclass
class AssetRuns:
    """What `create_asset_runs` did: when to look again, whether more events wait, the runs it started."""

    deadline: datetime | None
    more: bool
    ready: Ready = field(default_factory=Ready)
    begun: int = 0
    #: no run of a DAG without flow rules waited queued when the runs were made
    none_queued: bool = False


def flow_dags(dags: dict[str, DAG], paused: set[str]) -> set[str]:
    """The DAGs with flow rules (`key=`, `priority=`, ...) that may run now."""
    return {d for d, dag in dags.items() if dag.flow is not None and d not in paused}


def create_asset_runs(
    conn: Connection,
    dags: dict[str, DAG],
    asset_ids: dict[str, int],
    paused: set[str],
    now: datetime,
    flow_locked: set[str] | None = None,
    stop: list[int] | None = None,
    budget: int = 0,
) -> AssetRuns:
    """Runs for the queued events, by each DAG's asset condition and batch policy.

    Up to `budget` runs start at once, as `start_runs` would start them in this pass, when
    their DAG has no `max_active_runs` and no run waits queued before them (one row version
    and one statement less per run): their tries are returned.

    A DAG with flow rules makes runs only when this transaction holds its row
    (`flow_locked`, from `store.flow.lock_dags`): its keys, bursts and order are decided
    by one scheduler at a time; its `cancel_on=` events cancel runs, whose tries to stop
    after the commit are added to `stop`. Returns when a batch that is not full yet is
    due, whether more events wait, and the runs started.
    """
    locked = flow_locked or set()
    # Only DAGs that can run now: a paused DAG's backlog must not hide the others'.
    # windows and absences are planned by `herald.scheduler.windows`; DAGs with flow rules by
    # the scheduler holding their row (`locked`)
    runnable = [
        d
        for d, dag in dags.items()
        if d not in paused
        and dag.asset_condition is not None
        and not timed(dag.asset_condition)
        and (dag.flow is None or d in locked)
    ]
    if not runnable:
        return AssetRuns(None, False)
    rows = store_runs.pending_events(conn, runnable, EVENT_SCAN)
    pending = _pending(conn, dags, rows, asset_ids)
    deadline: datetime | None = None
    planned: list[tuple[str, list[Pending]]] = []
    for dag_id, items in pending.items():
        dag = dags.get(dag_id)
        if dag is None or dag.asset_condition is None:
            continue
        if dag.flow is not None:
            wake_at = flow.make_runs(conn, dag, items, now, stop)
            if wake_at is not None:
                deadline = wake_at if deadline is None else min(deadline, wake_at)
            continue
        planned_runs, wake_at = plan_runs(dag.asset_condition, dag.batch, items, now)
        if wake_at is not None:
            deadline = wake_at if deadline is None else min(deadline, wake_at)
        planned += [(dag_id, run_events) for run_events in planned_runs]
    made = AssetRuns(deadline, len(rows) == EVENT_SCAN)
    if planned:
        running = _start_at_once(conn, dags, [dag_id for dag_id, _ in planned], budget)
        # only when every new run started: one left queued (its DAG's max_active_runs, the budget)
        # is for `start_runs` to consider in this same pass
        made.none_queued = all(running)
        # All the pass's runs, their events and the events leaving the queue in one statement (PostgreSQL).
        run_pks = store_runs.create_event_runs(
            conn,
            [dag_id for dag_id, _ in planned],
            [[(p.queue_id, p.event_id) for p in evs] for _, evs in planned],
            now,
            running,
        )
        started = [(pk, dag_id) for pk, (dag_id, _), now_ in zip(run_pks, planned, running, strict=True) if now_]
        if started:
            made.ready += _make_tries(conn, dags, started, now)
            made.begun = len(started)
    return made


def _start_at_once(conn: Connection, dags: dict[str, DAG], dag_ids: list[str], budget: int) -> list[bool]:
    """Which of these new runs (DAGs without flow rules) start at once: as `start_runs` would in this
    pass when no run waits queued before them, within `budget`, their DAG without `max_active_runs`."""
    running = [False] * len(dag_ids)
    eligible = [i for i, d in enumerate(dag_ids) if dags[d].max_active_runs is None][:budget]
    if not eligible:
        return running
    with_flow = {d for d, dag in dags.items() if dag.flow is not None}
    if store_runs.queued_runs(conn, 1, with_flow):
        return running  # older runs first: they start in this pass's `start_runs`, these after them
    for i in eligible:
        running[i] = True
    return running


def _pending(
    conn: Connection, dags: dict[str, DAG], rows: list[Any], asset_ids: dict[str, int]
) -> dict[str, list[Pending]]:
    """Queued events by DAG, each with the keys it makes ready (its asset, resolved aliases and URIs)."""
    pending: dict[str, list[Pending]] = defaultdict(list)
    if not rows:
        return pending
    names = {v: k for k, v in asset_ids.items()}
    unknown = {int(r.asset_id) for r in rows} - set(names)
    if unknown:
        # assets created since the last sync (by an alias event of another scheduler)
        names.update(store_aliases.asset_names(conn, unknown))
    consumers = [dags[d] for d in {r.dag_id for r in rows} if d in dags]
    keys = _resolution_keys(conn, consumers, {int(r.asset_id) for r in rows}, names)
    for r in rows:
        name = names.get(int(r.asset_id), "")
        pending[r.dag_id].append(Pending(int(r.id), int(r.event_id), name, r.queued_at, keys.get(name, frozenset())))
    return pending


def _resolution_keys(
    conn: Connection, dags: list[DAG], asset_ids: set[int], names: dict[int, str]
) -> dict[str, frozenset[str]]:
    """For each pending asset name, the alias and URI keys it makes ready in the DAGs' conditions.

    Only DAGs whose schedule names an alias or a URI reference cost a query.
    """
    conditions = [c for d in dags if (c := d.schedule_condition) is not None]
    aliases = {al.name for c in conditions for al in c.iter_asset_aliases()}
    by_uri = any(isinstance(ref, AssetUriRef) for c in conditions for ref in c.iter_asset_refs())
    keys: dict[str, set[str]] = defaultdict(set)
    for alias, assets in store_aliases.resolved_assets(conn, aliases).items():
        for asset in assets:
            keys[asset].add(f"alias:{alias}")
    if by_uri:
        for asset_id, uri in store_aliases.asset_uris(conn, asset_ids).items():
            if asset_id in names:
                keys[names[asset_id]].add(f"uri:{uri}")
    return {name: frozenset(found) for name, found in keys.items()}


def cron_ticks(dag: DAG, due: datetime, now: datetime, limit: int) -> tuple[list[datetime], datetime | None]:
    """The ticks to make runs for now, from the due tick `due`, and the tick after them (None: no more).

    With `catchup=True` every tick from `due` up to now (at most `limit` of them; the rest
    in later passes); with `catchup=False` only the latest tick at or before now.
    """
    ticks = dag.ticks
    assert ticks is not None
    if ticks.once:
        return [due], None
    if not dag.catchup:
        latest = max(due, ticks.at_or_before(now))
        if ticks.every is not None and now - due < ticks.every:
            # a period's tick taken a little late keeps its time: the next one is a full
            # period after it, so runs do not drift by the scheduler's latency
            latest = due
        return [latest], after_end(dag, ticks.after(latest))
    made: list[datetime] = []
    tick: datetime | None = due
    while tick is not None and tick <= now and len(made) < limit:
        made.append(tick)
        tick = after_end(dag, ticks.after(tick))
    return made, tick


def create_cron_runs(
    conn: Connection, dags: dict[str, DAG], paused: set[str], now: datetime, asset_ids: dict[str, int] | None = None
) -> tuple[datetime | None, bool]:
    """Runs of DAGs whose cron tick has come; returns the next tick, and whether more ticks are due now.

    Each run gets its tick as logical date and data interval. A catch-up creates at most
    `CATCHUP_QUEUE` waiting runs of one DAG at a time: the next ones follow as those start.

    An `AssetAndTimeSchedule` DAG's tick makes a run only once its asset condition
    holds over its queued events, which the run then consumes; until then the
    tick waits (the events' arrival wakes the scheduler, not the clock).
    """
    due, earliest = store_runs.due_crons(conn, now)
    more = False
    for row in due:
        dag = dags.get(row.dag_id)
        ticks = dag.ticks if dag is not None else None
        if dag is None or ticks is None or row.dag_id in paused:
            continue
        gate = dag.gate_condition
        interval = timedelta(seconds=dag.cron_interval)
        if gate is not None:
            tick = max(row.next_cron_at, ticks.at_or_before(now))
            if not _gated_run(conn, dag, gate, asset_ids or {}, now, tick):
                continue  # the tick waits for its assets
            when = after_end(dag, ticks.after(tick))
        else:
            room = CATCHUP_QUEUE - store_runs.queued_count(conn, row.dag_id) if dag.catchup else 1
            if room <= 0:
                continue  # a run starting (a result of its tries) wakes the scheduler again
            made, when = cron_ticks(dag, row.next_cron_at, now, room)
            store_runs.create_runs(
                conn, [row.dag_id] * len(made), RunType.SCHEDULED, now, logical_dates=made, interval=interval
            )
        store_runs.set_next_cron(conn, row.dag_id, when)
        if when is not None:
            more = more or when <= now
            earliest = when if earliest is None else min(earliest, when)
    return earliest, more


def _gated_run(
    conn: Connection, dag: DAG, gate: BaseAsset, asset_ids: dict[str, int], now: datetime, tick: datetime
) -> bool:
    """A scheduled run of `dag` for `tick` consuming its queued events, if they satisfy `gate`; False when
    they do not."""
    rows = store_runs.pending_events(conn, [dag.dag_id], EVENT_SCAN)
    items = _pending(conn, {dag.dag_id: dag}, rows, asset_ids).get(dag.dag_id, [])
    if not items or not gate.evaluate({key for p in items for key in p.ready()}):
        return False
    interval = timedelta(seconds=dag.cron_interval)
    (run_pk,) = store_runs.create_runs(
        conn, [dag.dag_id], RunType.SCHEDULED, now, logical_dates=[tick], interval=interval
    )
    store_runs.link_events(conn, [(run_pk, p.event_id) for p in items])
    store_runs.consume_events(conn, [p.queue_id for p in items])
    return True


def start_runs(
    conn: Connection,
    dags: dict[str, DAG],
    paused: set[str],
    now: datetime,
    budget: int,
    flow_locked: set[str] | None = None,
    none_queued: bool = False,
) -> tuple[Ready, bool, flow.Admitted]:
    """Start queued runs within `max_active_runs` and `budget`; returns their tries ready to queue
    (and queued already), whether more runs may start at once, and what flow control decided
    for the DAGs with flow rules whose rows this transaction holds (`flow_locked`): tries to
    stop, when to look again. `none_queued`: this pass found no run of a DAG without flow
    rules queued and made none since (the queued runs are not read again)."""
    with_flow = {d for d, dag in dags.items() if dag.flow is not None}
    if none_queued:
        ready, more, begun = Ready(), False, 0
    else:
        ready, more, begun = _start_plain(conn, dags, paused, now, budget, with_flow)
    decided = flow.Admitted(more=more)
    budget -= begun
    for dag_id in sorted((flow_locked or set()) - paused):
        dag = dags.get(dag_id)
        if dag is None or dag.flow is None:
            continue
        admitted = flow.admit(conn, dag, now, max(0, budget))
        budget -= len(admitted.started)
        if admitted.started:
            ready += _begin(conn, dags, [(pk, dag_id) for pk in admitted.started], now)
        decided.cancel += admitted.cancel
        decided.more |= admitted.more
        if admitted.next_at is not None:
            decided.next_at = admitted.next_at if decided.next_at is None else min(decided.next_at, admitted.next_at)
    return ready, decided.more, decided


def _start_plain(
    conn: Connection, dags: dict[str, DAG], paused: set[str], now: datetime, budget: int, exclude: set[str]
) -> tuple[Ready, bool, int]:
    """Start queued runs of the DAGs without flow rules, oldest first; returns their ready tries,
    whether more may start at once, and how many runs started."""
    if budget <= 0:
        # tries wait for workers up to the back-pressure limit: no run starts, so the backlog of
        # queued runs (up to RUN_SCAN rows) is not read at every pass; a try ending wakes a pass
        return Ready(), False, 0
    queued = store_runs.queued_runs(conn, RUN_SCAN, exclude)
    if not queued:
        return Ready(), False, 0
    limited = {r.dag_id for r in queued if (d := dags.get(r.dag_id)) is not None and d.max_active_runs}
    active = store_runs.active_counts(conn, limited)
    started: list[tuple[int, str]] = []
    missing: list[int] = []
    for row in queued:
        if row.dag_id in paused:
            continue
        dag = dags.get(row.dag_id)
        if dag is None:
            missing.append(int(row.id))
            continue
        if len(started) >= budget:
            break
        if dag.max_active_runs is not None:
            if active.get(row.dag_id, 0) >= dag.max_active_runs:
                continue
            active[row.dag_id] = active.get(row.dag_id, 0) + 1
        started.append((int(row.id), row.dag_id))
    store_runs.finish(conn, RunState.FAILED, missing, now, queued=True)
    if not started:
        return Ready(), False, 0
    ready = _begin(conn, dags, started, now)
    return ready, len(queued) == RUN_SCAN and len(started) < budget, len(started)


def _begin(conn: Connection, dags: dict[str, DAG], started: list[tuple[int, str]], now: datetime) -> Ready:
    """These queued runs (run_pk, dag_id) start: their tries are created; returns those ready to queue
    and those queued already.

    A task without upstream tasks is ready at once; unless it is mapped (expanded first) or its
    DAG bounds its active tasks (`within_max_active_tasks` decides), its first try is
    inserted `queued`, as queueing it in this pass would leave it. A run another scheduler is
    starting meanwhile is left to it (`store.runs.start`).
    """
    begun = set(store_runs.start(conn, [pk for pk, _ in started], now))
    return _make_tries(conn, dags, [(pk, dag_id) for pk, dag_id in started if pk in begun], now)


def _make_tries(conn: Connection, dags: dict[str, DAG], started: list[tuple[int, str]], now: datetime) -> Ready:
    """The tries of these runs, which started in this transaction (a run without tasks ends at once)."""
    rows: list[dict[str, Any]] = []
    for run_pk, dag_id in started:
        dag = dags[dag_id]
        for task in dag.tasks.values():
            # Without upstream tasks every trigger rule lets a task run at once.
            state = TryState.NONE if task.upstream else TryState.SCHEDULED
            direct = state == TryState.SCHEDULED and task.mapped is None and dag.max_active_tasks is None
            rows.append(
                {
                    "run_pk": run_pk,
                    "dag_id": dag_id,
                    "state": TryState.QUEUED if direct else state,
                    "try_number": 1 if direct else 0,
                    "max_tries": task.retries + 1,
                    "queue": task.queue,
                    "task_id": task.task_id,
                }
            )
    pks = [pk for pk, _ in started]
    # a run that starts has no tries yet: those inserted `scheduled` or `queued` are all it has ready
    inserted = store_tries.insert_tries(conn, rows)
    with_tasks = {r["run_pk"] for r in rows}
    ends.end_runs(conn, dags, RunState.SUCCESS, [pk for pk in pks if pk not in with_tasks], now, ends.SUCCESS)
    return Ready(inserted.ready, inserted.queued)


def within_max_active_tasks(conn: Connection, dags: dict[str, DAG], ti_ids: list[int]) -> list[int]:
    """The tries that may be queued now, in order: a DAG's `max_active_tasks` bounds its queued
    and running tries across all its runs. The others stay `scheduled` for a later pass (a
    try ending wakes the scheduler)."""
    limited = {d for d, dag in dags.items() if dag.max_active_tasks is not None}
    if not limited or not ti_ids:
        return ti_ids
    owners = store_tries.dags_of(conn, ti_ids)
    concerned = {owners[i] for i in ti_ids if owners.get(i) in limited}
    if not concerned:
        return ti_ids
    active = store_tries.active_counts(conn, concerned)
    allowed: list[int] = []
    for ti_id in ti_ids:
        dag_id = owners.get(ti_id)
        if dag_id in concerned:
            cap = dags[dag_id].max_active_tasks
            if dag_id not in active or cap is None or active[dag_id] >= cap:
                continue  # at its limit, or another scheduler is queueing this DAG's tries
            active[dag_id] += 1
        allowed.append(ti_id)
    return allowed
