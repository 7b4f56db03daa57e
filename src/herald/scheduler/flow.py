"""Flow control in the scheduler: keyed runs from queued events, and which queued runs start.

For a DAG with flow rules (`DAG(key=..., ...)`, `herald.sdk.flow`) the scheduler
first locks the DAG's row (`store.flow.lock_dags`, SKIP LOCKED), so that of
several schedulers one decides for it per pass. Then, in that pass's transaction:

- `make_runs` groups the DAG's queued events by key (the DAG's batch and asset
  condition apply within each key), gives each run its key and priority, and
  gathers a debounced key's burst into one run held until the key goes quiet;
  an event of a `cancel_on=` asset (queued for the DAG as its schedule's are)
  cancels the queued and running runs of its key made by older events, and the
  older events of its key still queued (gathered in a batch: they leave the queue
  recorded as cancelled, `store.cancelled_events`, and make no run);
- `admit` asks the store for the runs their key's concurrency lets start, in
  order, among the keys marked since the last pass (a run of the key ended or
  came: `store.flow.lock_dirty`, cleared once decided; every `SWEEP_EVERY` among
  all keys, a net under the marks), and applies the other rules to them one by one: rate limit (skip),
  throttle (hold), `on_new_event` (skip, or cancel the key's running run),
  `max_active_runs`, the back-pressure budget. Each run held, skipped or
  cancelled records the rule (`dag_run.held_by`).

Everything decided is written before the commit; stopping the cancelled runs'
tries is asked of the executor after it (`Executor.cancel`, as `dagrun_timeout` does).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from herald.scheduler.policy import Pending, plan_runs
from herald.sdk.dag import DAG
from herald.sdk.flow import FlowControl
from herald.sdk.waits import payload_of
from herald.store import cancelled_events as store_cancelled
from herald.store import flow as store_flow
from herald.store import runs as store_runs
from herald.store import tries as store_tries
from herald.store.cancelled_events import Cancelled
from herald.store.flow import DEBOUNCE, RunFlow
from herald.store.states import RunState, RunType

log = logging.getLogger("herald.scheduler")

#: queued runs of one DAG looked at per pass
FLOW_SCAN = 2000
#: marked keys of one DAG taken per pass (the others wait for the next)
DIRTY_SCAN = 5000
#: how often admission reads every key of a DAG, not only the marked ones: a net under the
#: marks for a run that ends by a path that marks nothing (a user deleting it)
SWEEP_EVERY = timedelta(seconds=60)
#: how soon to look again when another scheduler held what a decision needed
RETRY_SOON = timedelta(milliseconds=100)

KEY = "key"
THROTTLE = "throttle"
RATE_LIMIT = "rate_limit"
MAX_ACTIVE_RUNS = "max_active_runs"


@dataclass
class Admitted:
    """What `admit` decided for one DAG."""

    #: runs to start now (their tries are created by the caller)
    started: list[int] = field(default_factory=list)
    #: tries of cancelled runs an executor had: to stop after the commit
    cancel: list[int] = field(default_factory=list)
    next_at: datetime | None = None
    more: bool = False
    #: keys to look at again next pass (their runs were cut by the budget or `max_active_runs`)
    again: set[str] = field(default_factory=set)


#: when each DAG's admission last read every key, in this process. Kept in memory: losing it
#: (a restart) only makes the next pass a sweep; several schedulers each sweep on their own.
_swept: dict[str, datetime] = {}


def _key_and_priority(dag: DAG, flow: FlowControl, extra: Any) -> tuple[str | None, float]:
    payload = payload_of(extra)
    try:
        key = flow.key_of(payload)
    except Exception as exc:  # a user's callable: its failure must not stop the scheduler
        log.warning("DAG %s: key= failed on an event (%s); the run's key is null", dag.dag_id, exc)
        key = "null"
    try:
        priority = flow.priority_of(payload)
    except Exception as exc:
        log.warning("DAG %s: priority= failed on an event (%s); the run's priority is 0", dag.dag_id, exc)
        priority = 0.0
    return key, priority


def make_runs(
    conn: Connection, dag: DAG, items: list[Pending], now: datetime, stop: list[int] | None = None
) -> datetime | None:
    """Runs of a flow DAG from its queued events (oldest first), and the cancels of its `cancel_on=`
    events; returns when a waiting batch is due (or a cancel must be tried again). The tries of
    cancelled running runs are added to `stop` (to stop after the commit).

    Events are grouped by key first: a batch or an asset condition gathers events of one key.
    A `cancel_on=` event cancels what its key's older events made or are still gathering:
    their runs (queued or running), and those of them still queued (`_cancel_queued`). The
    cancels are applied before this pass's runs are made, so a run of events that came after
    a cancel never holds an older one, and never joins a run the cancel ends.
    """
    flow = dag.flow
    assert flow is not None and dag.asset_condition is not None
    extras = store_flow.payloads(conn, [p.event_id for p in items])
    cancelling = {a.name for a in flow.cancel_on}
    cancels = [p for p in items if p.asset in cancelling]
    items = [p for p in items if p.asset not in cancelling]
    keyed = {p.event_id: _key_and_priority(dag, flow, extras.get(p.event_id)) for p in items}
    deadline: datetime | None = None
    if cancels:
        targets = [(p, _cancel_key(dag, flow, p, extras)) for p in cancels]
        deadline = _cancel(conn, dag, targets, now, stop if stop is not None else [])
        items = _cancel_queued(conn, dag, items, keyed, targets, now)
    wake_at = _runs_of_events(conn, dag, flow, items, keyed, now)
    if wake_at is not None:
        deadline = wake_at if deadline is None else min(deadline, wake_at)
    return deadline


def _runs_of_events(
    conn: Connection,
    dag: DAG,
    flow: FlowControl,
    items: list[Pending],
    keyed: dict[int, tuple[str | None, float]],
    now: datetime,
) -> datetime | None:
    """The runs of the DAG's schedule events (`make_runs`); returns when a waiting batch is due."""
    if not items:
        return None
    assert dag.asset_condition is not None
    groups: dict[str | None, list[Pending]] = defaultdict(list)
    priority: dict[int, float] = {}
    for p in items:
        key, priority[p.event_id] = keyed[p.event_id]
        groups[key].append(p)
    deadline: datetime | None = None
    planned: list[tuple[str | None, list[Pending]]] = []
    for key, group in groups.items():
        made, wake_at = plan_runs(dag.asset_condition, dag.batch, group, now)
        if wake_at is not None:
            deadline = wake_at if deadline is None else min(deadline, wake_at)
        planned += [(key, evs) for evs in made]
    if not planned:
        return deadline
    if flow.debounce is not None:
        _gather_bursts(conn, dag, flow, planned, priority, now)
    else:
        # a run with a key limit waits for its key's turn unless admission starts it in this pass
        held = KEY if flow.max_active_runs_per_key is not None else None
        flows = [RunFlow(key, max(priority[p.event_id] for p in evs), held) for key, evs in planned]
        pks = store_runs.create_runs(conn, [dag.dag_id] * len(planned), RunType.ASSET_TRIGGERED, now, flow=flows)
        store_runs.link_events(conn, [(pk, p.event_id) for pk, (_, evs) in zip(pks, planned, strict=True) for p in evs])
    store_runs.consume_events(conn, [p.queue_id for _, evs in planned for p in evs])
    return deadline


def _gather_bursts(
    conn: Connection,
    dag: DAG,
    flow: FlowControl,
    planned: list[tuple[str | None, list[Pending]]],
    priority: dict[int, float],
    now: datetime,
) -> None:
    """Each key's new events join its open debounce run, or open one held until the key goes quiet."""
    debounce = flow.debounce
    assert debounce is not None
    by_key: dict[str, list[Pending]] = defaultdict(list)
    for key, evs in planned:
        by_key[key or ""] += evs
    quiet = timedelta(seconds=debounce.seconds)
    cap = timedelta(seconds=debounce.max_wait) if debounce.max_wait is not None else None
    bursts = store_flow.open_bursts(conn, dag.dag_id, list(by_key), now)
    links: list[tuple[int, int]] = []
    new_keys: list[str] = []
    for key, evs in by_key.items():
        top = max(priority[p.event_id] for p in evs)
        kept = evs[-1:] if debounce.keep == "last" else evs
        burst = bursts.get(key)
        if burst is None:
            new_keys.append(key)
            continue
        until = now + quiet
        if cap is not None:
            until = min(until, burst.queued_at + cap)
        store_flow.extend_burst(conn, int(burst.id), until, max(top, float(burst.priority)))
        if debounce.keep == "last":
            store_flow.unlink_events(conn, int(burst.id))
        links += [(int(burst.id), p.event_id) for p in kept]
    if new_keys:
        until = now + (min(quiet, cap) if cap is not None else quiet)
        flows = [RunFlow(k, max(priority[p.event_id] for p in by_key[k]), DEBOUNCE, until) for k in new_keys]
        pks = store_runs.create_runs(conn, [dag.dag_id] * len(new_keys), RunType.ASSET_TRIGGERED, now, flow=flows)
        for pk, key in zip(pks, new_keys, strict=True):
            kept = by_key[key][-1:] if debounce.keep == "last" else by_key[key]
            links += [(pk, p.event_id) for p in kept]
    store_runs.link_events(conn, links)


def _cancel_key(dag: DAG, flow: FlowControl, p: Pending, extras: dict[int, Any]) -> str | None:
    """The key whose runs and events a `cancel_on=` event cancels (None: it cancels nothing)."""
    try:
        return flow.cancel_key_of(payload_of(extras.get(p.event_id)))
    except Exception as exc:  # a JMESPath evaluation error must not stop the scheduler
        log.warning(
            "DAG %s: the cancel_on key failed on event %d (%s); it cancels nothing", dag.dag_id, p.event_id, exc
        )
        return None


def _cancel(
    conn: Connection, dag: DAG, targets: list[tuple[Pending, str | None]], now: datetime, stop: list[int]
) -> datetime | None:
    """Each `cancel_on=` event (oldest first, with its key) cancels the queued and running runs of
    its key made by older events, then leaves the queue; returns when to try again one that found
    a run of its key locked by another scheduler (it stays queued until then: nothing it must
    cancel is missed)."""
    done: list[int] = []
    retry: datetime | None = None
    for p, key in targets:
        if key is None:
            done.append(p.queue_id)
            continue
        why = f"cancelled by event {p.event_id}"
        runs = store_flow.active_of_key(conn, dag.dag_id, key, p.event_id)
        queued = [int(r.id) for r in runs if r.state == RunState.QUEUED]
        running = [int(r.id) for r in runs if r.state == RunState.RUNNING]
        ended = store_flow.end_queued(conn, RunState.CANCELLED, [(pk, why) for pk in queued], now, event_id=p.event_id)
        cancelled = store_flow.cancel_running(conn, running, why, now, event_id=p.event_id)
        if cancelled:
            stop += store_tries.skip_unfinished(conn, cancelled, now, why)
        if ended or cancelled:
            names = [r.run_id for r in runs if int(r.id) in {*ended, *cancelled}]
            log.info("DAG %s: %s (key %r): %s", dag.dag_id, why, key, ", ".join(names))
        if len(cancelled) < len(running):
            retry = now + RETRY_SOON  # a run of the key is locked by another scheduler's pass
            continue
        done.append(p.queue_id)
    store_runs.consume_events(conn, done)
    return retry


def _cancel_queued(
    conn: Connection,
    dag: DAG,
    items: list[Pending],
    keyed: dict[int, tuple[str | None, float]],
    targets: list[tuple[Pending, str | None]],
    now: datetime,
) -> list[Pending]:
    """The DAG's queued events of a key older than a `cancel_on=` event of that key (gathered in a
    batch, waiting on an asset condition, or come in the same pass) leave the queue cancelled by
    the first such event after them, recorded (`store.cancelled_events`): no run is made from
    them. Returns the events left, which make runs as usual."""
    by_key: dict[str, list[int]] = defaultdict(list)
    for c, key in targets:
        if key is not None:
            by_key[key].append(c.event_id)
    kept: list[Pending] = []
    gone: list[tuple[Pending, Cancelled]] = []
    for p in items:
        key = keyed[p.event_id][0]
        later = [e for e in by_key.get(key, []) if e > p.event_id] if key is not None else []
        if not later:
            kept.append(p)
            continue
        gone.append((p, Cancelled(p.event_id, key, p.queued_at, min(later))))
    if gone:
        store_cancelled.record(conn, dag.dag_id, [c for _, c in gone], now)
        store_runs.consume_events(conn, [p.queue_id for p, _ in gone])
        log.info(
            "DAG %s: %d queued event(s) cancelled before a run took them: %s",
            dag.dag_id,
            len(gone),
            ", ".join(f"{c.event_id} by {c.cancelled_by_event}" for _, c in gone),
        )
    return kept


def admit(conn: Connection, dag: DAG, now: datetime, budget: int) -> Admitted:
    """Decide which queued runs of a flow DAG (its row locked) start now, within `budget` runs."""
    flow = dag.flow
    assert flow is not None
    out = Admitted()
    if budget <= 0:
        # nothing may start: the marks wait for a pass with room (a try ending wakes one), untouched
        return out
    mode = flow.on_new_event
    cap = flow.max_active_runs_per_key
    last = _swept.get(dag.dag_id)
    sweep = last is None or now - last >= SWEEP_EVERY or now < last
    # only debounce and throttle hold a run until a time; a sweep looks anyway (rules changed since)
    timed = flow.debounce is not None or flow.throttle is not None or sweep
    released = store_flow.release(conn, dag.dag_id, now, KEY if cap is not None else None) if timed else set()
    marks: dict[str, int] = {}
    if not sweep:
        marks = store_flow.lock_dirty(conn, dag.dag_id, DIRTY_SCAN)
        out.more = len(marks) == DIRTY_SCAN
    keys = None if sweep else sorted({*marks, *released})
    per_key = cap if mode == "queue" else None
    candidates = store_flow.candidates(conn, dag.dag_id, per_key, now, FLOW_SCAN, keys)
    if sweep and len(candidates) < FLOW_SCAN:
        _swept[dag.dag_id] = now  # a sweep cut short is done again next pass
    if len(candidates) == FLOW_SCAN and keys is not None:
        out.again.update(keys)  # some of these keys' runs were not read: all of them again
    if not candidates:
        out.next_at = store_flow.next_release(conn, dag.dag_id, now) if timed else None
        _remark(conn, dag.dag_id, out, marks)
        return out
    holds: list[tuple[int, str, datetime | None]] = []
    skips: list[tuple[int, str]] = []
    if mode == "cancel_running":
        candidates = _newest_per_key(conn, candidates, now)
    keys = sorted({c.run_key for c in candidates if c.run_key is not None})
    # with "queue" the candidates are within their key's limit already (running and queued ahead
    # counted by `candidates`): the running runs are read only to skip or cancel against them
    reads_running = cap is not None and keys and mode != "queue"
    running = store_flow.running_of_keys(conn, dag.dag_id, keys) if reads_running else {}
    limits = [lim for lim in (flow.throttle, flow.rate_limit) if lim is not None]
    window = max((lim.period for lim in limits), default=0.0)
    starts = store_flow.starts_since(conn, dag.dag_id, keys, now - timedelta(seconds=window)) if limits else {}
    active = store_flow.running_count(conn, dag.dag_id) if dag.max_active_runs is not None else 0
    blocked: dict[str, tuple[str, datetime | None]] = {}
    full = False
    for c in candidates:
        key = c.run_key
        if key is not None and key in blocked:
            holds.append((int(c.id), *blocked[key]))
            continue
        if full or len(out.started) >= budget:
            full = True
            if dag.max_active_runs is not None and active >= dag.max_active_runs:
                holds.append((int(c.id), MAX_ACTIVE_RUNS, None))
            if key is not None:
                out.again.add(key)  # no run of the key ends to mark it: it waits on the DAG's limits
            continue
        if key is not None:
            decided = _key_rules(conn, flow, c, running.get(key, []), starts.get(key, []), now, out)
            if decided is not None:
                kind, reason, until = decided
                if kind == "skip":
                    skips.append((int(c.id), reason))
                else:
                    blocked[key] = (reason, until)
                    holds.append((int(c.id), reason, until))
                    if until is not None:
                        out.next_at = until if out.next_at is None else min(out.next_at, until)
                continue
        if dag.max_active_runs is not None and active >= dag.max_active_runs:
            full = True
            holds.append((int(c.id), MAX_ACTIVE_RUNS, None))
            if key is not None:
                out.again.add(key)
            continue
        out.started.append(int(c.id))
        active += 1
        if key is not None:
            running.setdefault(key, []).append(c)
            starts.setdefault(key, []).append(now)
    store_flow.end_queued(conn, RunState.SKIPPED, skips, now)
    store_flow.hold(conn, [h for h, c in zip(holds, _rows_by_id(candidates, holds), strict=True) if _changed(c, h)])
    release = store_flow.next_release(conn, dag.dag_id, now) if timed else None
    if release is not None:
        out.next_at = release if out.next_at is None else min(out.next_at, release)
    out.more = (out.more or len(candidates) == FLOW_SCAN) and not full
    _remark(conn, dag.dag_id, out, marks)
    return out


def _remark(conn: Connection, dag_id: str, out: Admitted, marks: dict[str, int]) -> None:
    """The marks this pass read are cleared, except those of the keys it left undecided, which
    stay marked for the next pass (never lost), as do the keys marked again meanwhile."""
    store_flow.clear_dirty(conn, dag_id, {k: v for k, v in marks.items() if k not in out.again})
    store_flow.mark_dirty(conn, [(dag_id, k) for k in sorted(out.again) if k not in marks])


def _key_rules(
    conn: Connection,
    flow: FlowControl,
    run: Any,
    running: list[Any],
    starts: list[datetime],
    now: datetime,
    out: Admitted,
) -> tuple[str, str, datetime | None] | None:
    """The key rules for one candidate run: None (it may start), ("skip", why, None) or ("hold", why, until)."""
    if flow.rate_limit is not None:
        since = now - timedelta(seconds=flow.rate_limit.period)
        if sum(1 for s in starts if s > since) >= flow.rate_limit.count:
            return "skip", RATE_LIMIT, None
    if flow.throttle is not None:
        since = now - timedelta(seconds=flow.throttle.period)
        recent = [s for s in starts if s > since]
        if len(recent) >= flow.throttle.count:
            # the period allows another start once the oldest of the last `count` starts leaves it
            return "hold", THROTTLE, recent[-flow.throttle.count] + timedelta(seconds=flow.throttle.period)
    cap = flow.max_active_runs_per_key
    if cap is None or len(running) < cap:
        return None
    if flow.on_new_event == "skip":
        return "skip", KEY, None
    if flow.on_new_event == "queue":
        return "hold", KEY, None
    # cancel_running: the key's oldest running runs make room for this one
    victims = running[: len(running) - cap + 1]
    why = f"cancelled by run {run.run_id}"
    cancelled = store_flow.cancel_running(conn, [int(v.id) for v in victims], why, now)
    if cancelled:
        log.info("%s: %s", why, ", ".join(v.run_id for v in victims if int(v.id) in cancelled))
        out.cancel += store_tries.skip_unfinished(conn, cancelled, now, why)
    running[:] = [r for r in running if int(r.id) not in cancelled]
    if len(cancelled) < len(victims):
        # another scheduler holds one of them: look again in a moment (its end, if it is
        # ending, marks the key too)
        out.again.add(str(run.run_key))
        soon = now + RETRY_SOON
        out.next_at = soon if out.next_at is None else min(out.next_at, soon)
        return "hold", KEY, None
    return None


def _newest_per_key(conn: Connection, candidates: list[Any], now: datetime) -> list[Any]:
    """`cancel_running`: of a key's queued runs only the newest may start; the older ones end
    cancelled by it (the newest event wins)."""
    newest: dict[str, Any] = {}
    for c in candidates:
        if c.run_key is not None and (c.run_key not in newest or int(c.id) > int(newest[c.run_key].id)):
            newest[c.run_key] = c
    older = [c for c in candidates if c.run_key is not None and newest[c.run_key] is not c]
    store_flow.end_queued(
        conn, RunState.CANCELLED, [(int(c.id), f"cancelled by run {newest[c.run_key].run_id}") for c in older], now
    )
    gone = {int(c.id) for c in older}
    return [c for c in candidates if int(c.id) not in gone]


def _rows_by_id(candidates: list[Any], holds: list[tuple[int, str, datetime | None]]) -> list[Any]:
    rows = {int(c.id): c for c in candidates}
    return [rows[h[0]] for h in holds]


def _changed(row: Any, hold: tuple[int, str, datetime | None]) -> bool:
    """A hold worth writing: a new rule, or an end time (only the rule is read back here)."""
    return row.held_by != hold[1] or hold[2] is not None
