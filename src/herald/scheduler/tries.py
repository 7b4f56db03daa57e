"""The try state machine: results applied, retries, trigger rules, and when a run is over.

Written once, here: how a try's end moves it (success, skipped, up_for_retry,
failed), which waiting tries may run, are skipped or fail upstream (the trigger
rules, as Airflow evaluates them), and how a run ends (Airflow's rule: failed
if a leaf task failed or was upstream_failed, else success).
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from herald.executors.records import TaskResult
from herald.scheduler import ends, mapping, waits
from herald.sdk.assets import Asset, AssetNameRef
from herald.sdk.dag import DAG
from herald.sdk.trigger_rule import TriggerRule
from herald.store import runs as store_runs
from herald.store import tries as store_tries
from herald.store import waits as store_waits
from herald.store.aliases import TaskEvent, alias_events, emit_task_events
from herald.store.states import RunState, TryEnd, TryState
from herald.store.storable import SizeLimits
from herald.store.waits import NewWait

#: states of a try that has been handed to a worker, or waits deferred: only these take a result
_RUNNABLE = frozenset({TryState.QUEUED, TryState.RUNNING, TryState.DEFERRED})
#: a try not yet started: the `skip` list of a result may still skip it
_NOT_STARTED = frozenset({TryState.NONE, TryState.SCHEDULED})
#: times a try whose worker was lost is queued again before it fails (HERALD_MAX_LOST_WORKER_REQUEUES)
MAX_LOST_REQUEUES = 3
#: how a try stopped by a time limit is worded by whoever stopped it: the local pool and
#: Celery's worker (`timeout=`), a deferral's deadline, Airflow's sensors (`AirflowSensorTimeout`)
_TIMED_OUT = re.compile(r"^timed out after |AirflowSensorTimeout|Sensor has timed out")


def end_of(r: TaskResult, state: TryState) -> TryEnd:
    """Why a try ended, for its history: the state it ends in, and for a failure what failed it."""
    if state is TryState.SUCCESS:
        return TryEnd.SUCCESS
    if state is TryState.SKIPPED:
        return TryEnd.SKIPPED
    if r.lost:
        return TryEnd.LOST_WORKER
    if r.error and _TIMED_OUT.search(r.error):
        return TryEnd.TIMED_OUT
    return TryEnd.FAILED


@dataclass(frozen=True)
class Upstream:
    """How the direct upstream tasks of a waiting try stand (removed ones are left out)."""

    total: int = 0
    success: int = 0
    skipped: int = 0
    failed: int = 0
    upstream_failed: int = 0

    @property
    def done(self) -> int:
        """Upstream tasks that ended, however."""
        return self.success + self.skipped + self.failed + self.upstream_failed

    @classmethod
    def count(cls, states: Iterable[TryState]) -> Upstream:
        """Count the states of the upstream tries."""
        n: dict[TryState, int] = defaultdict(int)
        total = 0
        for s in states:
            if s is TryState.REMOVED:
                continue
            total += 1
            n[s] += 1
        return cls(total, n[TryState.SUCCESS], n[TryState.SKIPPED], n[TryState.FAILED], n[TryState.UPSTREAM_FAILED])


def evaluate(rule: TriggerRule | str, up: Upstream) -> TryState | None:
    """What a waiting try becomes: `scheduled` (it runs), `skipped`, `upstream_failed`, or None (it waits)."""
    if up.total == 0:
        return TryState.SCHEDULED
    decided = _decided(TriggerRule(rule), up)
    if decided is not None:
        return decided
    return TryState.SCHEDULED if _met(TriggerRule(rule), up) else None


def _decided(rule: TriggerRule, up: Upstream) -> TryState | None:
    """A waiting try that can never run under its rule: skipped or upstream_failed."""
    all_done = up.done >= up.total
    failures = up.failed + up.upstream_failed
    if rule is TriggerRule.ALL_SUCCESS:
        if failures:
            return TryState.UPSTREAM_FAILED
        if up.skipped:
            return TryState.SKIPPED
    elif rule is TriggerRule.ALL_FAILED:
        if up.success or up.skipped:
            return TryState.SKIPPED
    elif rule is TriggerRule.ONE_SUCCESS:
        if all_done and up.done == up.skipped:
            return TryState.SKIPPED
        if all_done and up.success == 0:
            return TryState.UPSTREAM_FAILED
    elif rule is TriggerRule.ONE_FAILED:
        if all_done and not failures:
            return TryState.SKIPPED
    elif rule is TriggerRule.ONE_DONE:
        if all_done and not (up.failed or up.success):
            return TryState.SKIPPED
    elif rule is TriggerRule.NONE_FAILED:
        if failures:
            return TryState.UPSTREAM_FAILED
    elif rule is TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS:
        if failures:
            return TryState.UPSTREAM_FAILED
        if up.skipped == up.total:
            return TryState.SKIPPED
    elif rule is TriggerRule.NONE_SKIPPED:
        if up.skipped:
            return TryState.SKIPPED
    elif rule is TriggerRule.ALL_SKIPPED:
        if up.success or failures:
            return TryState.SKIPPED
    elif rule is TriggerRule.ALL_DONE_MIN_ONE_SUCCESS:
        # Skipped upstream tasks do not count as done for this rule: one skips it.
        if up.skipped:
            return TryState.SKIPPED
        if all_done and up.success == 0:
            return TryState.UPSTREAM_FAILED
    # ALL_DONE, ALL_DONE_SETUP_SUCCESS (no setup tasks in Herald) and ALWAYS never decide without running.
    return None


def _met(rule: TriggerRule, up: Upstream) -> bool:
    all_done = up.done >= up.total
    failures = up.failed + up.upstream_failed
    if rule is TriggerRule.ALL_SUCCESS:
        return up.success >= up.total
    if rule is TriggerRule.ALL_FAILED:
        return failures >= up.total
    if rule in (TriggerRule.ALL_DONE, TriggerRule.ALL_DONE_SETUP_SUCCESS):
        return all_done
    if rule is TriggerRule.ALL_DONE_MIN_ONE_SUCCESS:
        return all_done and not up.skipped and up.success > 0
    if rule is TriggerRule.ONE_SUCCESS:
        return up.success > 0
    if rule is TriggerRule.ONE_FAILED:
        return failures > 0
    if rule is TriggerRule.ONE_DONE:
        return up.success + up.failed > 0
    if rule in (TriggerRule.NONE_FAILED, TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS):
        return up.success + up.skipped >= up.total
    if rule is TriggerRule.NONE_SKIPPED:
        return all_done and not up.skipped
    if rule is TriggerRule.ALL_SKIPPED:
        return up.skipped >= up.total
    return rule is TriggerRule.ALWAYS


#: the tries of a run's tasks: one state per task, or one per map index of a mapped task
RunStates = Mapping[str, TryState | Sequence[TryState]]


def _each(value: TryState | Sequence[TryState]) -> Sequence[TryState]:
    return (value,) if isinstance(value, TryState) else value


def run_outcome(dag: DAG | None, states: RunStates) -> RunState | None:
    """How a run ends once every try has ended (None while one has not).

    Failed if a leaf task (one nothing depends on) failed or was upstream_failed, in any
    of its map indexes; success if every leaf succeeded or was skipped; failed otherwise.
    Without its DAG (removed from the files), any failed try fails the run.
    """
    every = [s for v in states.values() for s in _each(v)]
    if not all(s.finished for s in every):
        return None
    if dag is None:
        bad = any(s in (TryState.FAILED, TryState.UPSTREAM_FAILED) for s in every)
        return RunState.FAILED if bad else RunState.SUCCESS
    upstream_of_something = {u for task in dag.tasks.values() for u in task.upstream}
    leaves = [
        s
        for tid, v in states.items()
        if tid not in upstream_of_something
        for s in _each(v)
        if s is not TryState.REMOVED
    ]
    if any(s in (TryState.FAILED, TryState.UPSTREAM_FAILED) for s in leaves):
        return RunState.FAILED
    if all(s in (TryState.SUCCESS, TryState.SKIPPED) for s in leaves):
        return RunState.SUCCESS
    return RunState.FAILED


def decide_waiting(dag: DAG, states: dict[str, Any]) -> dict[str, TryState]:
    """The waiting (`none`) tasks of one run that can be decided now, and what they become.

    `states` maps each task id to its state, or to the list of its tries' states (a
    mapped task has one per map index). An upstream mapped task counts with every map
    index, as Airflow's trigger rules count upstream task instances. Decisions cascade
    within the call: a skipped task can skip its own downstream. `states` is updated in place.
    """
    decided: dict[str, TryState] = {}
    changed = True
    while changed:
        changed = False
        for task_id, value in states.items():
            task = dag.tasks.get(task_id)
            if task is None or TryState.NONE not in _each(value):
                continue
            up = Upstream.count(s for u in task.upstream for s in _each(states.get(u, TryState.SUCCESS)))
            new = evaluate(task.trigger_rule, up)
            if new is not None:
                decided[task_id] = new
                states[task_id] = (
                    new if isinstance(value, TryState) else [new if s is TryState.NONE else s for s in value]
                )
                changed = changed or new.finished
    return decided


class TryMachine:
    """Applies results and trigger rules to the database, for the DAGs of the latest load."""

    def __init__(
        self,
        max_map_length: int = mapping.MAX_MAP_LENGTH,
        limits: SizeLimits | None = None,
        max_lost_requeues: int = MAX_LOST_REQUEUES,
    ) -> None:
        #: logs and results past these sizes are cut or failed before they are stored
        self.limits = limits or SizeLimits()
        #: times a try whose worker was lost goes back to the queue before it fails
        self.max_lost_requeues = max_lost_requeues
        self.dags: dict[str, DAG] = {}
        self.asset_ids: dict[str, int] = {}
        self.consumers_of_asset: dict[int, list[str]] = {}
        self._index: dict[tuple[str, str], list[str]] = {}
        self._index_of: dict[str, DAG] | None = None
        self.max_map_length = max_map_length
        #: DAG callback requests made since the scheduler last looked (it wakes the runner)
        self.callbacks_requested = 0
        #: tries deferred on a trigger a triggerer runs, since the scheduler last looked (it wakes the triggerers)
        self.triggers_deferred = 0

    def apply_results(
        self,
        conn: Connection,
        results: list[TaskResult],
        now: datetime,
        touched: set[int],
        requeued: list[int] | None = None,
    ) -> int:
        """Apply ended tries: one SELECT for the batch, one UPDATE per shape of change.

        Adds the runs that changed to `touched`, and the tries that went back to the
        queue because their worker was lost to `requeued` (they must be handed to the
        executor again); returns how many outlet events were created.
        """
        if not results:
            return 0
        rows = store_tries.read(conn, (r.ti_id for r in results))
        states = {ti_id: TryState(row.state) for ti_id, row in rows.items()}
        changes: list[dict[str, Any]] = []
        deferred: list[NewWait] = []
        outlets: list[tuple[Any, TaskResult]] = []
        skips: dict[int, set[str]] = defaultdict(set)
        lost_counts = store_tries.requeue_counts(
            conn, ((r.ti_id, int(rows[r.ti_id].try_number)) for r in results if r.lost and r.ti_id in rows)
        )
        lost: list[tuple[int, int, str, str | None]] = []
        lost_ids: set[int] = set()
        # A try that deferred keeps one log: what it printed before, its trigger's lines, what came after.
        carried = [i for i, row in rows.items() if states[i] is TryState.DEFERRED or row.next_method is not None]
        earlier = store_tries.logs_of(conn, carried) if carried else {}
        for r in results:
            if r.ti_id in earlier:
                r.log = earlier[r.ti_id] + (r.log or "")
            r.capped(self.limits)
            row = rows.get(r.ti_id)
            if row is None or states[r.ti_id] not in _RUNNABLE:
                continue  # already ended, or waiting for a retry: a late or repeated result
            if r.try_number is not None and r.try_number != row.try_number:
                continue  # the result of an earlier try (its worker was presumed dead)
            if r.ti_id in lost_ids:
                continue  # requeued by a result of this batch: a second notice of the same loss
            if r.lost and r.state is TryState.FAILED:
                # Not the task's failure: its worker died or went silent. The try runs again
                # under the same number, without using a retry, a few times at most (a task
                # that kills its worker every time must not take down workers for ever).
                key = (r.ti_id, int(row.try_number))
                count = lost_counts.get(key, 0)
                reason = r.error or "the worker running the task was lost"
                if count < self.max_lost_requeues:
                    lost.append((r.ti_id, int(row.try_number), reason, r.hostname))
                    lost_ids.add(r.ti_id)
                    lost_counts[key] = count + 1
                    states[r.ti_id] = TryState.QUEUED
                    continue
                r = dataclasses.replace(
                    r,
                    retry=False,
                    error=f"{reason} (its worker was lost {count + 1} times; a try goes back to the queue "
                    f"at most {self.max_lost_requeues} times: HERALD_MAX_LOST_WORKER_REQUEUES)",
                )
            touched.add(int(row.run_pk))
            values: dict[str, Any] = {"id": r.ti_id, "ended_at": r.ended_at or now, "log": r.log, "error": r.error}
            if r.started_at is not None:
                values["started_at"] = r.started_at
            if r.hostname:
                values["hostname"] = r.hostname
            unmappable = self._unmappable(row, r) if r.state is TryState.SUCCESS else None
            if unmappable is not None:
                # as Airflow's task runner fails a task whose value a mapped task cannot expand over
                r = dataclasses.replace(r, state=TryState.FAILED, error=unmappable, skip=[])
                values["error"] = unmappable
            wait = self._wait(r, now) if r.state is TryState.DEFERRED else None
            if wait is not None:
                # the try keeps no worker: the wait is stored, and the try is not over
                values.update(state=TryState.DEFERRED, ended_at=None)
                # where it resumes when its trigger fires (None: the wait's end ends the try)
                defer = r.defer or {}
                values.update(next_method=defer.get("method"), next_kwargs=defer.get("kwargs"))
                deferred.append(wait)
            elif r.state is TryState.DEFERRED:
                values.update(state=TryState.FAILED, error=r.error)
            elif r.state in (TryState.SUCCESS, TryState.SKIPPED):
                values.update(state=r.state, result=r.result, xcom=r.xcom or None)
                if r.state is TryState.SUCCESS:
                    outlets.append((row, r))
                if r.skip:
                    skips[int(row.run_pk)].update(r.skip)
            elif r.retry and row.try_number < row.max_tries:
                values.update(state=TryState.UP_FOR_RETRY, next_try_at=now + timedelta(seconds=self._delay(row)))
            else:
                values["state"] = TryState.FAILED
            if values["state"] is not TryState.DEFERRED:
                values["reason"] = end_of(r, TryState(values["state"]))
            states[r.ti_id] = values["state"]
            changes.append(values)
        store_tries.write_ends(conn, changes)
        if lost:
            again = store_tries.requeue_lost(conn, lost, now)
            if requeued is not None:
                requeued += again
        store_waits.add(conn, deferred, now)
        self.triggers_deferred += sum(1 for x in deferred if x.trigger is not None)
        if skips:
            self._skip(conn, skips, now)
        return self._emit_outlets(conn, outlets, now)

    @staticmethod
    def _wait(r: TaskResult, now: datetime) -> NewWait | None:
        """What a deferred try waits for; None (with `r.error` set) when its deferral is not valid."""
        try:
            if r.defer is None:
                raise ValueError("it did not say what it waits for")
            return waits.new_wait(r.ti_id, r.defer, now)
        except (ValueError, TypeError, KeyError) as exc:
            r.error = f"the task deferred, but its deferral cannot be kept: {exc}"
        return None

    def _unmappable(self, row: Any, r: TaskResult) -> str | None:
        dag = self.dags.get(row.dag_id)
        if dag is None or int(row.map_index) >= 0:
            return None
        return mapping.check_source(dag, row.task_id, r.result, r.xcom, self.max_map_length)

    def _delay(self, row: Any) -> float:
        dag = self.dags.get(row.dag_id)
        return dag.tasks[row.task_id].retry_delay if dag is not None and row.task_id in dag.tasks else 0.0

    def _skip(self, conn: Connection, skips: dict[int, set[str]], now: datetime) -> None:
        """Tasks a result asked to skip (branching, short-circuit), if they have not started."""
        ids = [
            int(row.id)
            for row in store_tries.of_runs(conn, skips)
            if row.task_id in skips[int(row.run_pk)] and TryState(row.state) in _NOT_STARTED
        ]
        store_tries.decide(conn, TryState.SKIPPED, ids, now)

    def _emit_outlets(self, conn: Connection, outlets: list[tuple[Any, TaskResult]], now: datetime) -> int:
        """The events of succeeded tries: one per outlet asset, and those added through aliases."""
        wanted = [
            (row, r)
            for row, r in outlets
            if (dag := self.dags.get(row.dag_id)) is not None
            and row.task_id in dag.tasks
            and (dag.tasks[row.task_id].outlets or r.outlet_alias_events)
        ]
        if not wanted:
            return 0
        run_ids = store_runs.run_ids(conn, (int(row.run_pk) for row, _ in wanted))
        events: list[TaskEvent] = []
        for row, r in wanted:
            run_id = run_ids[int(row.run_pk)]
            map_index = int(row.map_index)
            origin: dict[str, Any] = {
                "dag_id": row.dag_id,
                "task_id": row.task_id,
                "run_id": run_id,
                "map_index": map_index,
            }
            # each map index of a mapped task emits its own event, as each Airflow task instance does
            dedupe_key = run_id if map_index < 0 else f"{run_id}#{map_index}"
            for outlet in self.dags[row.dag_id].tasks[row.task_id].outlets:
                if isinstance(outlet, Asset):
                    # Airflow's extra of a task's event is what the task set, nothing more.
                    extra = dict(r.outlet_extras.get(outlet.name, {}))
                    events.append(
                        TaskEvent(
                            asset=outlet.to_wire(),
                            extra=extra,
                            dag_id=row.dag_id,
                            task_id=row.task_id,
                            run_id=run_id,
                            map_index=map_index,
                            dedupe_key=dedupe_key,
                        )
                    )
            events += alias_events(r.outlet_alias_events, origin)
        emitted = emit_task_events(conn, events, self._consumers_of, now)
        for name, asset_id in emitted.new_assets.items():
            self.asset_ids.setdefault(name, asset_id)
        return emitted.events

    def _consumers_of(self, asset_id: int, asset: Mapping[str, Any], aliases: tuple[str, ...]) -> list[str]:
        """The DAGs an event of this asset is queued for: scheduled on it, on a reference to it, or
        (for an event emitted through aliases) on one of those aliases, which now resolve to it."""
        found = list(self.consumers_of_asset.get(asset_id, ()))
        index = self._schedule_index()
        if not index:
            return found  # no DAG schedules on a reference or an alias: the common, fast case
        wanted = [
            *index.get(("name", str(asset.get("name"))), ()),
            *index.get(("uri", str(asset.get("uri"))), ()),
            *(dag_id for alias in aliases for dag_id in index.get(("alias", alias), ())),
        ]
        for dag_id in wanted:
            if dag_id not in found:
                found.append(dag_id)
                # later events of the asset reach these DAGs too, as Airflow's resolved aliases do
                self.consumers_of_asset.setdefault(asset_id, []).append(dag_id)
        return found

    def _schedule_index(self) -> dict[tuple[str, str], list[str]]:
        """("name"|"uri"|"alias", value) -> the DAGs whose schedule names that reference or alias (per load)."""
        if self._index_of is not self.dags:
            index: dict[tuple[str, str], list[str]] = defaultdict(list)
            for dag_id, dag in self.dags.items():
                condition = dag.schedule_condition
                if condition is None:
                    continue
                for ref in condition.iter_asset_refs():
                    key = ("name", ref.name) if isinstance(ref, AssetNameRef) else ("uri", getattr(ref, "uri", ""))
                    index[key].append(dag_id)
                for alias in condition.iter_asset_aliases():
                    index[("alias", alias.name)].append(dag_id)
            self._index, self._index_of = dict(index), self.dags
        return self._index

    def advance(self, conn: Connection, runs: set[int], now: datetime) -> list[int]:
        """Decide the waiting tries of runs that changed, and end the runs that are over.

        Returns the tries that may run now.
        """
        if not runs:
            return []
        by_run: dict[int, dict[str, list[TryState]]] = defaultdict(lambda: defaultdict(list))
        waiting: dict[tuple[int, str], list[int]] = defaultdict(list)
        dag_of: dict[int, str] = {}
        for row in store_tries.of_runs(conn, runs):
            run_pk = int(row.run_pk)
            by_run[run_pk][row.task_id].append(TryState(row.state))
            if row.state == TryState.NONE:
                waiting[(run_pk, row.task_id)].append(int(row.id))
            dag_of[run_pk] = row.dag_id
        decisions: dict[TryState, list[int]] = defaultdict(list)
        ended: dict[RunState, list[int]] = defaultdict(list)
        for run_pk, states in by_run.items():
            dag = self.dags.get(dag_of[run_pk])
            if dag is not None:
                for task_id, new in decide_waiting(dag, states).items():
                    decisions[new] += waiting[(run_pk, task_id)]
            outcome = run_outcome(dag, states)
            if outcome is not None:
                ended[outcome].append(run_pk)
        for new, ti_ids in decisions.items():
            store_tries.decide(conn, new, sorted(ti_ids), now)
        for final, pks in ended.items():
            reason = ends.SUCCESS if final is RunState.SUCCESS else ends.TASK_FAILURE
            self.callbacks_requested += ends.end_runs(conn, self.dags, final, pks, now, reason)
        return sorted(decisions.get(TryState.SCHEDULED, []))
