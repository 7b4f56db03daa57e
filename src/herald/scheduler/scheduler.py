"""The scheduler loop: events -> runs -> task tries -> results, one transaction per pass.

Run creation lives in `scheduler.runs`, the try state machine in
`scheduler.tries`, request building in `scheduler.requests`; the executor
(`herald.executors.base.Executor`) is handed the committed tries by `submit`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from herald import notify
from herald.executors.base import Executor, TaskRequest, TaskResult, TaskStarted
from herald.scheduler import ends, flow, mapping, runs, waits, windows
from herald.scheduler.mapping import MAX_MAP_LENGTH
from herald.scheduler.requests import INLET_EVENTS_LIMIT, build_requests_or_fail
from herald.scheduler.tries import MAX_LOST_REQUEUES, TryMachine
from herald.sdk.airflow_triggers import TRIGGER_FAIL, encode_value
from herald.sdk.asset_windows import timed
from herald.sdk.dag import DAG
from herald.store import flow as store_flow
from herald.store import runs as store_runs
from herald.store import tries as store_tries
from herald.store.db import Database
from herald.store.states import RunState, TryState
from herald.store.storable import SizeLimits
from herald.store.types import utcnow

__all__ = ["PassOutcome", "Scheduler"]

log = logging.getLogger("herald.scheduler")

#: sleep without a wake-up before a pass (a safety net; wake-ups are the normal path),
#: growing while idle up to `notify.RECHECK_LONGEST` when the workers are in this process
IDLE_WAIT = 2.0
#: tries waiting for a worker beyond which no new run starts (back-pressure)
MAX_WAITING_TRIES = 2000


@dataclass
class PassOutcome:
    """What one pass decided: tries to hand to the executor, and when to look again."""

    requests: list[TaskRequest] = field(default_factory=list)
    #: tries of timed-out runs that an executor had: to stop (`Executor.cancel`)
    cancel: list[int] = field(default_factory=list)
    next_at: datetime | None = None
    more: bool = False
    events_created: int = 0
    #: tries whose request could not be built, failed with the reason (applied by the next pass)
    failed: list[TaskResult] = field(default_factory=list)


class Scheduler:
    """Creates runs by each DAG's policy, queues tasks in order, applies results.

    Args:
        db: the metadata database.
        executor: where task tries run.
        wake_event: set to make the scheduler look at once (by the triggerer,
            the executor, or a wake-up from another process).
        max_waiting_tries: tries waiting for a worker beyond which no new run starts.
        inlet_events_limit: latest events of each inlet a task gets (`inlet_events[asset]`).
        max_map_length: the most map indexes a mapped task may expand to.
        limits: the size caps applied to every result (log tail, return value).
        max_lost_requeues: times a try whose worker was lost goes back to the queue
            (without using a retry) before it fails.
    """

    def __init__(
        self,
        db: Database,
        executor: Executor,
        wake_event: asyncio.Event,
        max_waiting_tries: int = MAX_WAITING_TRIES,
        inlet_events_limit: int = INLET_EVENTS_LIMIT,
        max_map_length: int = MAX_MAP_LENGTH,
        limits: SizeLimits | None = None,
        max_lost_requeues: int = MAX_LOST_REQUEUES,
    ) -> None:
        self.db = db
        self.executor = executor
        self._wake = wake_event
        self.machine = TryMachine(max_map_length, limits, max_lost_requeues)
        self._results: list[TaskResult] = []
        self._started: list[TaskStarted] = []
        self._notify_after: set[str] = set()
        self.max_waiting_tries = max_waiting_tries
        self.inlet_events_limit = inlet_events_limit
        self._stopping = False
        self._any_mapped = False
        self._any_timed = False
        self._any_windowed = False
        #: called after a pass that asked for DAG callbacks (wakes the callback runner)
        self.on_callbacks: Callable[[], None] | None = None
        # PostgreSQL makes ids visible out of order (a transaction may commit after a later
        # id's): matching waits against events keeps looking at the last second's events
        self.wait_grace = 1.0 if db.engine.dialect.name == "postgresql" else 0.0

    @property
    def dags(self) -> dict[str, DAG]:
        """The DAGs of the latest load."""
        return self.machine.dags

    def update(self, dags: dict[str, DAG], asset_ids: dict[str, int], consumers: dict[int, list[str]]) -> None:
        """Use the DAGs of the latest load."""
        self.machine.dags = dags
        self.machine.asset_ids = asset_ids
        self.machine.consumers_of_asset = consumers
        # most deployments map nothing: their passes then skip reading the tries to expand
        self._any_mapped = any(t.mapped is not None for dag in dags.values() for t in dag.tasks.values())
        # nor do most run on a clock: their passes then skip looking for cron ticks
        self._any_timed = any(dag.ticks is not None for dag in dags.values())
        # windows and absences make runs after the asset runs: the queued runs are read again then
        self._any_windowed = any(timed(dag.asset_condition) for dag in dags.values())
        self.wake()

    def wake(self) -> None:
        """Look at the database now."""
        self._wake.set()

    def on_started(self, started: TaskStarted) -> None:
        """Executor callback: a try was handed to a worker."""
        self._started.append(started)
        self._wake.set()

    def on_result(self, result: TaskResult) -> None:
        """Executor callback: a try ended."""
        self._results.append(result)
        self._wake.set()

    def stop(self) -> None:
        """End the loop after the current pass."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """The scheduling loop, until `stop`."""
        if self.executor.workers_in_process:
            requeued = await self.db.run(self._recover)
            if requeued:
                self.executor.submit(requeued)
        # Results of in-process workers and every change that needs a pass come with a
        # wake-up, so the pass without one only covers a lost wake-up and backs off while
        # idle. Workers elsewhere are another matter: a worker that dies sends nothing, and
        # only a pass (`Executor.collect`) sees its heartbeats stop, so it stays regular.
        longest = notify.RECHECK_LONGEST if self.executor.workers_in_process else IDLE_WAIT
        recheck = notify.Recheck(IDLE_WAIT, longest)
        while not self._stopping:
            self._wake.clear()
            results, self._results = self._results, []
            started, self._started = self._started, []
            try:
                outcome = await self.db.run(self._pass, results, started)
            except Exception:
                log.exception("scheduler pass failed; retrying")
                self._results[:0] = results
                self._started[:0] = started
                await asyncio.sleep(1.0)
                continue
            self._results.extend(outcome.failed)
            if outcome.cancel:
                self.executor.cancel(outcome.cancel)
            if outcome.requests:
                try:
                    self.executor.submit(outcome.requests)
                except Exception:  # the loop must outlive any one batch (the tries stay queued until a restart)
                    log.exception("handing %d tries to the executor failed", len(outcome.requests))
            if self.machine.callbacks_requested:
                self.machine.callbacks_requested = 0
                if self.on_callbacks is not None:
                    self.on_callbacks()
            if self._notify_after:
                channels, self._notify_after = self._notify_after, set()
                notify.notify(self.db.url, *channels)
            if outcome.more or self._results:
                continue
            timeout = recheck.wait
            if outcome.next_at is not None:
                timeout = max(0.0, min(timeout, (outcome.next_at - utcnow()).total_seconds()))
            if await notify.wait_for_wake_up(self._wake, timeout):
                recheck.reset()
            elif timeout >= recheck.wait:
                recheck.found_nothing()  # a pass nobody asked for: the next one comes later

    def _recover(self) -> list[TaskRequest]:
        """After a restart: re-send tries that never reached a worker, fail those that did."""
        now = utcnow()
        touched: set[int] = set()
        with self.db.engine.begin() as conn:
            lost = [
                TaskResult(
                    ti_id=ti_id,
                    state=TryState.FAILED,
                    ended_at=now,
                    error="the task was running when Herald stopped; its worker is gone",
                    lost=True,
                )
                for ti_id in store_tries.in_state(conn, TryState.RUNNING)
            ]
            self.machine.apply_results(conn, lost, now, touched)
            self.machine.advance(conn, touched, now)
            requests, failed = build_requests_or_fail(
                conn, self.dags, store_tries.in_state(conn, TryState.QUEUED), inlet_events_limit=self.inlet_events_limit
            )
            self._results.extend(failed)
            return requests

    def _pass(self, results: list[TaskResult], started: list[TaskStarted]) -> PassOutcome:
        now = utcnow()
        outcome = PassOutcome()
        dags = self.dags
        with self.db.engine.begin() as conn:
            store_tries.mark_started(conn, [(s.ti_id, s.started_at, s.hostname) for s in started])
            collected, more = self.executor.collect(conn, now)
            results = [*results, *collected]
            outcome.more |= more
            touched: set[int] = set()
            store_runs.lock_runs_of_tries(conn, [r.ti_id for r in results])
            requeued: list[int] = []
            outcome.events_created += self.machine.apply_results(conn, results, now, touched, requeued)
            if self.machine.triggers_deferred:
                # the triggerers take the new trigger waits at once, not at their next lease round
                self.machine.triggers_deferred = 0
                if not notify.notify_in(conn, notify.TRIGGERS):
                    self._notify_after.add(notify.TRIGGERS)
            wait_at = self._resume_waits(conn, now, touched, outcome, requeued)
            timeout_at = self._time_out_runs(conn, now, outcome)
            to_queue = self.machine.advance(conn, touched, now)
            paused = store_runs.paused_dags(conn)
            # a DAG with flow rules is decided by one scheduler at a time: the one holding its row
            with_flow = runs.flow_dags(dags, paused)
            flow_locked, flow_busy = store_flow.lock_dags(conn, with_flow)
            busy_at = now + flow.RETRY_SOON if flow_busy else None
            budget = max(0, self.max_waiting_tries - self.executor.queued(conn))
            made = runs.create_asset_runs(
                conn, dags, self.machine.asset_ids, paused, now, flow_locked, outcome.cancel, budget
            )
            deadline = made.deadline
            budget -= made.begun
            outcome.more |= made.more
            window_at, more = windows.plan(conn, dags, paused, now, self.machine.asset_ids)
            outcome.more |= more
            if self._any_timed:
                cron_at, more = runs.create_cron_runs(conn, dags, paused, now, self.machine.asset_ids)
                outcome.more |= more
            else:
                cron_at = None
            # the queued runs were read by `create_asset_runs`, unless cron or window runs came since
            none_queued = made.none_queued and not self._any_timed and not self._any_windowed
            started_runs, more, decided = runs.start_runs(conn, dags, paused, now, budget, flow_locked, none_queued)
            started_runs += made.ready
            outcome.more |= more
            outcome.cancel += decided.cancel
            to_queue += started_runs.ready
            retry_ids, retry_at = store_tries.due_retries(conn, now)
            to_queue += retry_ids
            to_queue = self._expand(conn, sorted(set(to_queue)), now)
            to_queue = runs.within_max_active_tasks(conn, dags, to_queue)
            if to_queue or requeued or started_runs.queued:
                store_tries.queue(conn, to_queue)
                if self.executor.needs_requests:
                    # a requeued try (its worker was lost) is queued already, under its own number;
                    # so is the first try of a task its run's start inserted `queued`
                    outcome.requests, outcome.failed = build_requests_or_fail(
                        conn,
                        dags,
                        [*sorted([*to_queue, *started_runs.queued]), *requeued],
                        inlet_events_limit=self.inlet_events_limit,
                    )
                    outcome.more |= bool(outcome.failed)
                channel = self.executor.wake_channel
                if channel is not None and not notify.notify_in(conn, channel):
                    self._notify_after.add(channel)
            outcome.next_at = min(
                (
                    d
                    for d in (deadline, cron_at, retry_at, timeout_at, wait_at, window_at, decided.next_at, busy_at)
                    if d is not None
                ),
                default=None,
            )
        return outcome

    def _expand(self, conn: Connection, ti_ids: list[int], now: datetime) -> list[int]:
        """The tries to queue, mapped tasks expanded into their map indexes.

        A mapped task that ends without running (nothing to map over, an invalid value)
        may decide its downstream tasks at once: those are decided (and expanded) too.
        """
        if not self._any_mapped:
            return ti_ids
        ready: list[int] = []
        pending = ti_ids
        while pending:
            expanded = mapping.expand_ready(conn, self.dags, pending, now, self.machine.max_map_length)
            ready += expanded.ready
            pending = self.machine.advance(conn, expanded.ended_runs, now) if expanded.ended_runs else []
        return ready

    def _resume_waits(
        self, conn: Connection, now: datetime, touched: set[int], outcome: PassOutcome, requeued: list[int]
    ) -> datetime | None:
        """End the deferred tries whose event came or whose deadline passed (in this pass's transaction).

        Returns the next deadline of a wait.
        """
        resumed = waits.resolve(conn, now, self.wait_grace)
        if resumed.results:
            store_runs.lock_runs_of_tries(conn, [r.ti_id for r in resumed.results])
            results = self._resume_methods(conn, resumed, requeued)
            outcome.events_created += self.machine.apply_results(conn, results, now, touched)
        outcome.more |= resumed.more
        return resumed.next_at

    @staticmethod
    def _resume_methods(conn: Connection, resumed: waits.WaitOutcome, requeued: list[int]) -> list[TaskResult]:
        """Tries whose operator deferred to a method go back to the queue to run it (same try number).

        Their wait ended well (the time came, the event matched, the trigger fired): the
        method gets the event as `event` (the moment of a time trigger, as Airflow's; the
        matched event's record; the trigger's payload). A trigger that failed or timed out
        sends its try back with `next_method="__fail__"`. Returns the results left to apply
        (plain waits, and the other timeouts, which fail as usual).
        """
        ended_well = [
            r.ti_id for r in resumed.results if r.state is TryState.SUCCESS and r.ti_id not in resumed.ended_by_trigger
        ]
        methods = store_tries.next_methods(conn, ended_well) if ended_well else {}
        if not methods and not resumed.fail_in_worker:
            return resumed.results
        again: dict[int, dict[str, Any]] = {}
        for r in resumed.results:
            if r.ti_id in methods and r.state is TryState.SUCCESS and r.ti_id not in resumed.ended_by_trigger:
                moment = resumed.moments.get(r.ti_id)
                event = encode_value(moment) if moment is not None else r.result
                again[r.ti_id] = {**methods[r.ti_id][1], "event": event}
        # what the trigger logged goes into the try's log, between what came before and after
        logs = {r.ti_id: r.log for r in resumed.results if r.log}
        moved = store_tries.resume(conn, again, logs=logs)
        # a trigger that failed or timed out: the try runs again only to fail in its worker, as in Airflow
        moved += store_tries.resume(conn, resumed.fail_in_worker, method=TRIGGER_FAIL, logs=logs)
        requeued += moved
        gone = set(again) | set(moved)
        return [r for r in resumed.results if r.ti_id not in gone]

    def _time_out_runs(self, conn: Connection, now: datetime, outcome: PassOutcome) -> datetime | None:
        """Fail the runs past their DAG's dagrun_timeout, as Airflow: unfinished tries end skipped.

        The tries an executor had are stopped after the commit (`outcome.cancel`). Returns
        when the next running run will time out.
        """
        timeouts = {d: dag.dagrun_timeout for d, dag in self.dags.items() if dag.dagrun_timeout is not None}
        expired, next_at = store_runs.timed_out(conn, timeouts, now)
        if expired:
            for pk in expired:
                log.warning("run %s timed out (dagrun_timeout); its unfinished tasks are skipped", pk)
            outcome.cancel += store_tries.skip_unfinished(conn, expired, now, "the run timed out (dagrun_timeout)")
            self.machine.callbacks_requested += ends.end_runs(
                conn, self.dags, RunState.FAILED, expired, now, ends.TIMED_OUT
            )
        return next_at
