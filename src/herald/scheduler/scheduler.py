"""The scheduler loop: events -> runs -> task tries -> results, one transaction per pass."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, insert, select, update

from herald import notify
from herald.executors.base import Executor, TaskRequest, TaskResult, TaskStarted
from herald.scheduler.policy import Pending, plan_runs
from herald.sdk.dag import DAG
from herald.store import tables as t
from herald.store.db import Database
from herald.store.sync import next_cron
from herald.store.types import utcnow
from herald.triggerer.ingest import insert_events

log = logging.getLogger("herald.scheduler")

TERMINAL = frozenset({"success", "failed", "upstream_failed"})
#: events read per pass; a larger backlog is taken over several passes
EVENT_SCAN = 5000
RUN_SCAN = 2000
RESULT_SCAN = 1000
#: longest sleep without a wake-up (a safety net; wake-ups are the normal path)
IDLE_WAIT = 2.0
#: tries waiting for a worker beyond which no new run starts (back-pressure)
MAX_WAITING_TRIES = 2000
#: a running try whose worker has been silent this long is failed as lost
HEARTBEAT_TIMEOUT = 30.0


def new_run_id(run_type: str, now: datetime) -> str:
    """A unique run id: `asset_triggered__2026-11-21T12:00:00.123456+00:00_1a2b3c4d`."""
    return f"{run_type}__{now.isoformat()}_{secrets.token_hex(4)}"


@dataclass
class PassOutcome:
    """What one pass decided: tries to hand to the executor, and when to look again."""

    requests: list[TaskRequest] = field(default_factory=list)
    next_at: datetime | None = None
    more: bool = False
    events_created: int = 0


class Scheduler:
    """Creates runs by each DAG's policy, queues tasks in order, applies results.

    Args:
        db: the metadata database.
        executor: where task tries run.
        wake_event: set to make the scheduler look at once (by the triggerer,
            the executor, or a wake-up from another process).
    """

    def __init__(
        self,
        db: Database,
        executor: Executor | None,
        wake_event: asyncio.Event,
        max_waiting_tries: int = MAX_WAITING_TRIES,
    ) -> None:
        self.db = db
        # None: tries are left queued in the database for `herald worker` processes,
        # whose results come back through the task_result table.
        self.executor = executor
        self._wake = wake_event
        self.dags: dict[str, DAG] = {}
        self.consumers_of_asset: dict[int, list[str]] = {}
        self.asset_ids: dict[str, int] = {}
        self._results: list[TaskResult] = []
        self._notify_after: set[str] = set()
        #: called (on the event loop) with the ids of tries left queued in the database for
        #: workers, after the pass that queued them committed: the Celery executor's hook
        self.on_queued: Callable[[list[int]], None] | None = None
        self._queued_now: list[int] = []
        self.max_waiting_tries = max_waiting_tries
        self._started: list[TaskStarted] = []
        self._stopping = False

    def update(self, dags: dict[str, DAG], asset_ids: dict[str, int], consumers: dict[int, list[str]]) -> None:
        """Use the DAGs of the latest load."""
        self.dags = dags
        self.asset_ids = asset_ids
        self.consumers_of_asset = consumers
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
        if self.executor is not None:
            requeued = await self.db.run(self._recover)
            if requeued:
                self.executor.submit(requeued)
        while not self._stopping:
            self._wake.clear()
            results, self._results = self._results, []
            started, self._started = self._started, []
            try:
                outcome = await self.db.run(self._pass, results, started)
            except Exception:
                log.exception("scheduler pass failed; retrying")
                self._queued_now.clear()  # rolled back with the pass
                self._results[:0] = results
                self._started[:0] = started
                await asyncio.sleep(1.0)
                continue
            if outcome.requests and self.executor is not None:
                self.executor.submit(outcome.requests)
            queued, self._queued_now = self._queued_now, []
            if queued and self.on_queued is not None:
                self.on_queued(queued)
            if self._notify_after:
                channels, self._notify_after = self._notify_after, set()
                notify.notify(self.db.url, *channels)
            if outcome.more or self._results:
                continue
            timeout = IDLE_WAIT
            if outcome.next_at is not None:
                timeout = max(0.0, min(timeout, (outcome.next_at - utcnow()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    # -- one pass ----------------------------------------------------------------------

    def _recover(self) -> list[TaskRequest]:
        """After a restart: re-send tries that never reached a worker, fail those that did."""
        now = utcnow()
        touched: set[int] = set()
        with self.db.engine.begin() as conn:
            running = (
                conn.execute(select(t.task_instance.c.id).where(t.task_instance.c.state == "running")).scalars().all()
            )
            for ti_id in running:
                self._apply_result(
                    conn,
                    TaskResult(
                        ti_id=int(ti_id),
                        state="failed",
                        ended_at=now,
                        error="the task was running when Herald stopped; its worker is gone",
                    ),
                    now,
                    touched,
                )
            self._finish_runs(conn, touched, now)
            queued = (
                conn.execute(select(t.task_instance.c.id).where(t.task_instance.c.state == "queued")).scalars().all()
            )
            return self._requests(conn, [int(i) for i in queued], bump=False)

    def _pass(self, results: list[TaskResult], started: list[TaskStarted]) -> PassOutcome:
        now = utcnow()
        outcome = PassOutcome()
        with self.db.engine.begin() as conn:
            if started:
                ti = t.task_instance
                # One statement for the whole batch (executemany), not one round trip per try.
                conn.execute(
                    update(ti)
                    .where(ti.c.id == bindparam("b_id"), ti.c.state == "queued")
                    .values(state="running", started_at=bindparam("b_started_at"), hostname=bindparam("b_hostname"))
                    .execution_options(synchronize_session=False),
                    [{"b_id": s.ti_id, "b_started_at": s.started_at, "b_hostname": s.hostname} for s in started],
                )
            touched_runs: set[int] = set()
            if self.executor is None:
                claimed, more = self._claim_remote_results(conn)
                results = [*results, *claimed, *self._lost_workers(conn, now)]
                outcome.more |= more
            self._lock_runs(conn, [r.ti_id for r in results])
            outcome.events_created += self._apply_results(conn, results, now, touched_runs)
            to_queue: list[int] = []
            to_queue += self._ready_downstream(conn, touched_runs)
            self._finish_runs(conn, touched_runs, now)
            paused = set(conn.execute(select(t.dag.c.dag_id).where(t.dag.c.is_paused)).scalars())
            deadline, more = self._create_asset_runs(conn, paused, now)
            outcome.more |= more
            cron_at = self._create_cron_runs(conn, paused, now)
            started_runs, more = self._start_runs(conn, paused, now, self._budget(conn))
            outcome.more |= more
            to_queue += started_runs
            retry_ids, retry_at = self._due_retries(conn, now)
            to_queue += retry_ids
            if self.executor is None:
                self._queue_for_workers(conn, to_queue)
            else:
                outcome.requests = self._requests(conn, to_queue, bump=True)
            outcome.next_at = min((d for d in (deadline, cron_at, retry_at) if d is not None), default=None)
        return outcome

    def _lock_runs(self, conn: Connection, ti_ids: list[int]) -> None:
        """Lock the runs whose tries ended, in id order: two schedulers applying results
        of one run one after the other both see every finished task (READ COMMITTED)."""
        if not ti_ids or conn.dialect.name == "sqlite":
            return
        ti, dr = t.task_instance, t.dag_run
        runs = select(ti.c.run_pk).where(ti.c.id.in_(ti_ids)).scalar_subquery()
        conn.execute(select(dr.c.id).where(dr.c.id.in_(runs)).order_by(dr.c.id).with_for_update()).all()

    def _claim_remote_results(self, conn: Connection) -> tuple[list[TaskResult], bool]:
        """Results written by worker processes, claimed so no other scheduler applies them."""
        tr = t.task_result
        rows = conn.execute(select(tr).order_by(tr.c.id).limit(RESULT_SCAN).with_for_update(skip_locked=True)).all()
        if not rows:
            return [], False
        conn.execute(delete(tr).where(tr.c.id.in_([r.id for r in rows])))
        results = [
            TaskResult(
                ti_id=int(r.ti_id),
                state=r.state,
                result=r.result,
                error=r.error,
                log=r.log or "",
                started_at=r.started_at,
                ended_at=r.ended_at,
                hostname=r.hostname,
                outlet_extras=r.outlet_extras or {},
                try_number=r.try_number,
            )
            for r in rows
        ]
        return results, len(rows) == RESULT_SCAN

    def _lost_workers(self, conn: Connection, now: datetime) -> list[TaskResult]:
        """Tries whose worker stopped sending heartbeats: failed (and retried if they may be)."""
        ti = t.task_instance
        stale = conn.execute(
            select(ti.c.id, ti.c.hostname)
            .where(ti.c.state == "running", ti.c.heartbeat_at < now - timedelta(seconds=HEARTBEAT_TIMEOUT))
            .with_for_update(skip_locked=True)
        ).all()
        return [
            TaskResult(
                ti_id=int(r.id),
                state="failed",
                ended_at=now,
                hostname=r.hostname,
                error=f"the worker running the task ({r.hostname}) stopped sending heartbeats for "
                f"{HEARTBEAT_TIMEOUT:g}s; it is presumed dead",
            )
            for r in stale
        ]

    def _queue_for_workers(self, conn: Connection, ti_ids: list[int]) -> None:
        """Leave tries queued in the database for `herald worker` processes, and wake them."""
        if not ti_ids:
            return
        ti = t.task_instance
        conn.execute(
            update(ti)
            .where(ti.c.id.in_(ti_ids))
            .values(state="queued", try_number=ti.c.try_number + 1, next_try_at=None, heartbeat_at=None)
        )
        self._queued_now.extend(ti_ids)
        if not notify.notify_in(conn, notify.WORKERS):
            self._notify_after.add(notify.WORKERS)

    def _apply_result(self, conn: Connection, r: TaskResult, now: datetime, touched: set[int]) -> int:
        return self._apply_results(conn, [r], now, touched)

    def _apply_results(self, conn: Connection, results: list[TaskResult], now: datetime, touched: set[int]) -> int:
        """Apply ended tries: one SELECT for the batch, one UPDATE per shape of change (executemany).

        Returns how many outlet events were created.
        """
        if not results:
            return 0
        ti = t.task_instance
        rows: dict[int, Any] = {}
        ids = sorted({r.ti_id for r in results})
        for i in range(0, len(ids), 500):
            for found in conn.execute(
                select(
                    ti.c.id, ti.c.run_pk, ti.c.dag_id, ti.c.task_id, ti.c.try_number, ti.c.max_tries, ti.c.state
                ).where(ti.c.id.in_(ids[i : i + 500]))
            ):
                rows[int(found.id)] = found
        states = {ti_id: row.state for ti_id, row in rows.items()}
        updates: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        outlets: list[tuple[Any, TaskResult]] = []
        failed: list[Any] = []
        for r in results:
            row = rows.get(r.ti_id)
            if row is None or states[r.ti_id] not in ("queued", "running"):
                continue  # already ended, or waiting for a retry: a late or repeated result
            if r.try_number is not None and r.try_number != row.try_number:
                continue  # the result of an earlier try (its worker was presumed dead)
            touched.add(int(row.run_pk))
            values: dict[str, Any] = {"ended_at": r.ended_at or now, "log": r.log, "error": r.error}
            if r.started_at is not None:
                values["started_at"] = r.started_at
            if r.hostname:
                values["hostname"] = r.hostname
            if r.state == "success":
                values.update(state="success", result=r.result)
                outlets.append((row, r))
            elif row.try_number < row.max_tries:
                task = self.dags.get(row.dag_id)
                delay = task.tasks[row.task_id].retry_delay if task and row.task_id in task.tasks else 0.0
                values.update(state="up_for_retry", next_try_at=now + timedelta(seconds=delay))
            else:
                values["state"] = "failed"
                failed.append(row)
            states[r.ti_id] = values["state"]
            updates[tuple(sorted(values))].append({"b_id": r.ti_id, **{f"b_{k}": v for k, v in values.items()}})
        for keys, params in updates.items():
            conn.execute(
                update(ti)
                .where(ti.c.id == bindparam("b_id"))
                .values({k: bindparam(f"b_{k}") for k in keys})
                .execution_options(synchronize_session=False),
                params,
            )
        for row in failed:
            self._fail_downstream(conn, row.dag_id, int(row.run_pk), row.task_id, now)
        return sum(self._emit_outlets(conn, row.dag_id, row.task_id, int(row.run_pk), r, now) for row, r in outlets)

    def _emit_outlets(
        self, conn: Connection, dag_id: str, task_id: str, run_pk: int, r: TaskResult, now: datetime
    ) -> int:
        dag = self.dags.get(dag_id)
        if dag is None or task_id not in dag.tasks or not dag.tasks[task_id].outlets:
            return 0
        run_id = conn.execute(select(t.dag_run.c.run_id).where(t.dag_run.c.id == run_pk)).scalar_one()
        rows = []
        for asset in dag.tasks[task_id].outlets:
            asset_id = self.asset_ids.get(asset.name)
            if asset_id is None:
                continue
            extra = dict(r.outlet_extras.get(asset.name, {}))
            extra.setdefault("payload", None)
            extra["source_run"] = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id}
            rows.append(
                {
                    "asset_id": asset_id,
                    "source": f"task:{dag_id}.{task_id}",
                    "dedupe_key": f"{run_id}",
                    "extra": extra,
                    "timestamp": now,
                }
            )
        return len(insert_events(conn, rows, self.consumers_of_asset, now))

    def _fail_downstream(self, conn: Connection, dag_id: str, run_pk: int, failed_task: str, now: datetime) -> None:
        dag = self.dags.get(dag_id)
        if dag is None:
            return
        doomed: set[str] = set()
        frontier = {failed_task}
        while frontier:
            nxt = {tid for tid, task in dag.tasks.items() if task.upstream & frontier and tid not in doomed}
            doomed |= nxt
            frontier = nxt
        if doomed:
            ti = t.task_instance
            conn.execute(
                update(ti)
                .where(ti.c.run_pk == run_pk, ti.c.task_id.in_(doomed), ti.c.state == "none")
                .values(state="upstream_failed", ended_at=now)
            )

    def _ready_downstream(self, conn: Connection, runs: set[int]) -> list[int]:
        """Task instances whose upstream tasks all succeeded, in the runs that changed."""
        if not runs:
            return []
        ti = t.task_instance
        by_run: dict[int, dict[str, tuple[int, str]]] = defaultdict(dict)
        dag_of: dict[int, str] = {}
        for row in conn.execute(
            select(ti.c.id, ti.c.run_pk, ti.c.dag_id, ti.c.task_id, ti.c.state).where(ti.c.run_pk.in_(runs))
        ):
            by_run[int(row.run_pk)][row.task_id] = (int(row.id), row.state)
            dag_of[int(row.run_pk)] = row.dag_id
        ready: list[int] = []
        for run_pk, tis in by_run.items():
            dag = self.dags.get(dag_of[run_pk])
            if dag is None:
                continue
            for task_id, (ti_id, state) in tis.items():
                task = dag.tasks.get(task_id)
                if state != "none" or task is None:
                    continue
                if all(tis.get(up, (0, "success"))[1] == "success" for up in task.upstream):
                    ready.append(ti_id)
        if ready:
            conn.execute(update(ti).where(ti.c.id.in_(ready)).values(state="scheduled"))
        return ready

    def _finish_runs(self, conn: Connection, runs: set[int], now: datetime) -> None:
        if not runs:
            return
        ti = t.task_instance
        states: dict[int, list[str]] = defaultdict(list)
        for row in conn.execute(select(ti.c.run_pk, ti.c.state).where(ti.c.run_pk.in_(runs))):
            states[int(row.run_pk)].append(row.state)
        finished: dict[str, list[int]] = defaultdict(list)
        for run_pk, run_states in states.items():
            if all(s in TERMINAL for s in run_states):
                finished["success" if all(s == "success" for s in run_states) else "failed"].append(run_pk)
        for final, pks in finished.items():
            conn.execute(
                update(t.dag_run)
                .where(t.dag_run.c.id.in_(pks), t.dag_run.c.state == "running")
                .values(state=final, ended_at=now)
            )

    def _create_asset_runs(self, conn: Connection, paused: set[str], now: datetime) -> tuple[datetime | None, bool]:
        eq = t.event_queue
        # Only DAGs that can run now: a paused DAG's backlog must not hide the others'.
        runnable = [d for d, dag in self.dags.items() if d not in paused and dag.asset_condition is not None]
        if not runnable:
            return None, False
        rows = conn.execute(
            select(eq.c.id, eq.c.dag_id, eq.c.event_id, eq.c.asset_id, eq.c.queued_at)
            .where(eq.c.dag_id.in_(runnable))
            .order_by(eq.c.id)
            .limit(EVENT_SCAN)
            .with_for_update(skip_locked=True)
        ).all()
        names = {v: k for k, v in self.asset_ids.items()}
        pending: dict[str, list[Pending]] = defaultdict(list)
        for r in rows:
            if r.dag_id in paused:
                continue
            pending[r.dag_id].append(Pending(int(r.id), int(r.event_id), names.get(int(r.asset_id), ""), r.queued_at))
        deadline: datetime | None = None
        planned: list[tuple[str, list[Pending]]] = []
        for dag_id, items in pending.items():
            dag = self.dags.get(dag_id)
            if dag is None or dag.asset_condition is None:
                continue
            runs, wake_at = plan_runs(dag.asset_condition, dag.batch, items, now)
            if wake_at is not None:
                deadline = wake_at if deadline is None else min(deadline, wake_at)
            planned += [(dag_id, run_events) for run_events in runs]
        if planned:
            # All the pass's runs in one INSERT (ids back in order), their events in one, one DELETE.
            run_pks = self._insert_runs(conn, [dag_id for dag_id, _ in planned], "asset_triggered", now)
            conn.execute(
                insert(t.dag_run_event),
                [
                    {"run_pk": run_pk, "event_id": p.event_id}
                    for run_pk, (_, run_events) in zip(run_pks, planned, strict=True)
                    for p in run_events
                ],
            )
            queue_ids = [p.queue_id for _, run_events in planned for p in run_events]
            for i in range(0, len(queue_ids), 500):
                conn.execute(delete(eq).where(eq.c.id.in_(queue_ids[i : i + 500])))
        return deadline, len(rows) == EVENT_SCAN

    def _insert_runs(self, conn: Connection, dag_ids: list[str], run_type: str, now: datetime) -> list[int]:
        """Insert queued runs with empty conf; returns their ids in the order given."""
        if len(dag_ids) == 1:
            return [self._insert_run(conn, dag_ids[0], run_type, {}, now)]
        dr = t.dag_run
        return [
            int(r[0])
            for r in conn.execute(
                insert(dr).returning(dr.c.id, sort_by_parameter_order=True),
                [
                    {
                        "run_id": new_run_id(run_type, now),
                        "dag_id": dag_id,
                        "state": "queued",
                        "run_type": run_type,
                        "conf": {},
                        "queued_at": now,
                    }
                    for dag_id in dag_ids
                ],
            )
        ]

    def _insert_run(self, conn: Connection, dag_id: str, run_type: str, conf: dict[str, Any], now: datetime) -> int:
        return int(
            conn.execute(
                insert(t.dag_run)
                .values(
                    run_id=new_run_id(run_type, now),
                    dag_id=dag_id,
                    state="queued",
                    run_type=run_type,
                    conf=conf,
                    queued_at=now,
                )
                .returning(t.dag_run.c.id)
            ).scalar_one()
        )

    def _create_cron_runs(self, conn: Connection, paused: set[str], now: datetime) -> datetime | None:
        d = t.dag
        due = conn.execute(
            select(d.c.dag_id, d.c.next_cron_at)
            .where(d.c.is_active, d.c.next_cron_at <= now)
            .with_for_update(skip_locked=True)
        ).all()
        earliest: datetime | None = conn.execute(
            select(func.min(d.c.next_cron_at)).where(d.c.is_active, d.c.next_cron_at > now)
        ).scalar()
        for row in due:
            dag = self.dags.get(row.dag_id)
            if dag is None or dag.cron is None or row.dag_id in paused:
                continue
            when = row.next_cron_at
            if when <= now:
                self._insert_run(conn, row.dag_id, "scheduled", {}, now)
                when = next_cron(dag.cron, now)
                conn.execute(update(t.dag).where(t.dag.c.dag_id == row.dag_id).values(next_cron_at=when))
            earliest = when if earliest is None else min(earliest, when)
        return earliest

    def _budget(self, conn: Connection) -> int:
        """How many more runs may start now: back-pressure when the workers fall behind.

        Runs beyond it stay queued in the database, not in memory; they start as
        tries finish (each result wakes the scheduler).
        """
        if self.executor is not None:
            waiting = self.executor.queued()
        else:
            ti = t.task_instance
            sub = select(ti.c.id).where(ti.c.state == "queued").limit(self.max_waiting_tries).subquery()
            waiting = int(conn.execute(select(func.count()).select_from(sub)).scalar_one())
        return max(0, self.max_waiting_tries - waiting)

    def _start_runs(self, conn: Connection, paused: set[str], now: datetime, budget: int) -> tuple[list[int], bool]:
        dr = t.dag_run
        queued = conn.execute(
            select(dr.c.id, dr.c.dag_id)
            .where(dr.c.state == "queued")
            .order_by(dr.c.id)
            .limit(RUN_SCAN)
            .with_for_update(skip_locked=True)
        ).all()
        if not queued:
            return [], False
        limited = {r.dag_id for r in queued if (d := self.dags.get(r.dag_id)) is not None and d.max_active_runs}
        active: dict[str, int] = {}
        if limited:
            # Another scheduler starting runs of the same DAG waits here, then counts ours.
            conn.execute(
                select(t.dag.c.dag_id).where(t.dag.c.dag_id.in_(limited)).order_by(t.dag.c.dag_id).with_for_update()
            ).all()
            active = {
                r.dag_id: int(r.n)
                for r in conn.execute(
                    select(dr.c.dag_id, func.count().label("n"))
                    .where(dr.c.state == "running", dr.c.dag_id.in_(limited))
                    .group_by(dr.c.dag_id)
                )
            }
        ready: list[int] = []
        ti_rows: list[dict[str, Any]] = []
        started: list[int] = []
        missing: list[int] = []
        for row in queued:
            if row.dag_id in paused:
                continue
            dag = self.dags.get(row.dag_id)
            if dag is None:
                missing.append(int(row.id))
                continue
            if len(started) >= budget:
                break
            if dag.max_active_runs is not None:
                if active.get(row.dag_id, 0) >= dag.max_active_runs:
                    continue
                active[row.dag_id] = active.get(row.dag_id, 0) + 1
            started.append(int(row.id))
            for task in dag.tasks.values():
                ti_rows.append(
                    {
                        "run_pk": int(row.id),
                        "dag_id": row.dag_id,
                        "task_id": task.task_id,
                        "state": "scheduled" if not task.upstream else "none",
                        "try_number": 0,
                        "max_tries": task.retries + 1,
                        "queue": task.queue,
                    }
                )
        if missing:
            conn.execute(update(dr).where(dr.c.id.in_(missing)).values(state="failed", ended_at=now))
        if started:
            conn.execute(update(dr).where(dr.c.id.in_(started)).values(state="running", started_at=now))
            with_tasks = {r["run_pk"] for r in ti_rows}
            empty = [pk for pk in started if pk not in with_tasks]
            if ti_rows:
                conn.execute(insert(t.task_instance), ti_rows)
            if empty:
                conn.execute(update(dr).where(dr.c.id.in_(empty)).values(state="success", ended_at=now))
            ti = t.task_instance
            ready = [
                int(i)
                for i in conn.execute(
                    select(ti.c.id).where(ti.c.run_pk.in_(started), ti.c.state == "scheduled").order_by(ti.c.id)
                ).scalars()
            ]
        return ready, len(queued) == RUN_SCAN and bool(started) and len(started) < budget

    def _due_retries(self, conn: Connection, now: datetime) -> tuple[list[int], datetime | None]:
        ti = t.task_instance
        due = [
            int(i)
            for i in conn.execute(
                select(ti.c.id)
                .where(ti.c.state == "up_for_retry", ti.c.next_try_at <= now)
                .with_for_update(skip_locked=True)
            ).scalars()
        ]
        later = conn.execute(
            select(func.min(ti.c.next_try_at)).where(ti.c.state == "up_for_retry", ti.c.next_try_at > now)
        ).scalar()
        return due, later

    def _requests(self, conn: Connection, ti_ids: list[int], *, bump: bool) -> list[TaskRequest]:
        """Mark tries queued and build what the workers need to run them."""
        if not ti_ids:
            return []
        ti = t.task_instance
        if bump:
            conn.execute(
                update(ti)
                .where(ti.c.id.in_(ti_ids))
                .values(state="queued", try_number=ti.c.try_number + 1, next_try_at=None)
            )
        return build_requests(conn, self.dags, ti_ids)


def build_requests(conn: Connection, dags: dict[str, DAG], ti_ids: list[int]) -> list[TaskRequest]:
    """What workers need to run these tries: the run, its events, upstream results, limits."""
    if not ti_ids:
        return []
    ti, dr = t.task_instance, t.dag_run
    rows = conn.execute(
        select(
            ti.c.id,
            ti.c.run_pk,
            ti.c.dag_id,
            ti.c.task_id,
            ti.c.try_number,
            dr.c.run_id,
            dr.c.run_type,
            dr.c.conf,
            dr.c.started_at,
        )
        .join(dr, dr.c.id == ti.c.run_pk)
        .where(ti.c.id.in_(ti_ids))
        .order_by(ti.c.id)
    ).all()
    run_pks = {int(r.run_pk) for r in rows}
    events: dict[int, list[dict[str, Any]]] = defaultdict(list)
    ae, a, dre = t.asset_event, t.asset, t.dag_run_event
    for e in conn.execute(
        select(dre.c.run_pk, ae.c.id, ae.c.timestamp, ae.c.extra, ae.c.source, a.c.name, a.c.uri)
        .join(ae, ae.c.id == dre.c.event_id)
        .join(a, a.c.id == ae.c.asset_id)
        .where(dre.c.run_pk.in_(run_pks))
        .order_by(ae.c.id)
    ):
        events[int(e.run_pk)].append(
            {
                "id": int(e.id),
                "asset": e.name,
                "uri": e.uri,
                "timestamp": e.timestamp.isoformat(),
                "extra": e.extra,
                "source": e.source,
            }
        )
    results: dict[int, dict[str, Any]] = defaultdict(dict)
    needs_upstream = [
        r
        for r in rows
        if (d := dags.get(r.dag_id)) is not None and r.task_id in d.tasks and d.tasks[r.task_id].upstream
    ]
    if needs_upstream:
        for x in conn.execute(
            select(ti.c.run_pk, ti.c.task_id, ti.c.result).where(
                ti.c.run_pk.in_({int(r.run_pk) for r in needs_upstream}), ti.c.state == "success"
            )
        ):
            results[int(x.run_pk)][x.task_id] = x.result
    requests = []
    for r in rows:
        dag = dags.get(r.dag_id)
        task = dag.tasks.get(r.task_id) if dag else None
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
                },
                events=events.get(int(r.run_pk), []),
                upstream={
                    k: v for k, v in results.get(int(r.run_pk), {}).items() if task is not None and k in task.upstream
                },
                timeout=task.timeout if task else None,
                queue=task.queue if task else None,
            )
        )
    return requests


def trigger_run(conn: Connection, dag_id: str, conf: dict[str, Any], run_type: str = "manual") -> str:
    """Queue a manual run of `dag_id` (used by the CLI and the API); returns its run id."""
    now = utcnow()
    run_id = new_run_id(run_type, now)
    conn.execute(
        insert(t.dag_run).values(
            run_id=run_id, dag_id=dag_id, state="queued", run_type=run_type, conf=conf, queued_at=now
        )
    )
    return run_id


def consumers_from_db(conn: Connection, asset_id: int) -> dict[int, list[str]]:
    """The DAGs scheduled on an asset, read from the database (for processes without DAGs)."""
    rows = (
        conn.execute(
            select(t.dag_schedule_asset.c.dag_id)
            .join(t.dag, t.dag.c.dag_id == t.dag_schedule_asset.c.dag_id)
            .where(and_(t.dag_schedule_asset.c.asset_id == asset_id, t.dag.c.is_active))
        )
        .scalars()
        .all()
    )
    return {asset_id: list(rows)}
