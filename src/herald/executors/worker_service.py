"""`herald worker`: a pool of worker processes that takes tries from the database.

Used when the scheduler runs as a process of its own: it leaves tries queued in
the database; any number of workers claim them with SKIP LOCKED, run them on
their pre-started pool, send heartbeats while they run, and write the results
to `task_result` for a scheduler to apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

from sqlalchemy import Connection, Engine

from herald import notify
from herald.dagcheck import Stamp
from herald.executors.base import RequestBuilder
from herald.executors.local import LocalExecutor
from herald.executors.records import TaskRequest, TaskResult, TaskStarted
from herald.sdk.dag import DAG
from herald.store import tries as store_tries
from herald.store.db import Database
from herald.store.states import TryState
from herald.store.storable import SizeLimits
from herald.store.types import utcnow

log = logging.getLogger("herald.worker")

#: the longest time between two heartbeats of a running try
HEARTBEAT_INTERVAL = 5.0
IDLE_WAIT = 1.0
#: the longest a result waits for others to go with it while the pool has work queued
RESULT_HOLD = 0.05
DEFAULT_QUEUE = "default"


def heartbeat_interval(timeout: float) -> float:
    """Seconds between two heartbeats: several within the heartbeat timeout, so that one slow
    beat (a busy database) never makes a live worker look lost, whatever the timeout is set to."""
    return min(HEARTBEAT_INTERVAL, timeout / 4)


def exchange(
    engine: Engine,
    build: RequestBuilder,
    dags: dict[str, DAG],
    results: list[TaskResult],
    name: str,
    limit: int,
    queues: list[str] | None,
) -> list[TaskRequest]:
    """Store finished tries' results and claim up to `limit` new tries, in one transaction.

    One commit per cycle instead of two: on PostgreSQL each commit waits for the WAL
    to reach the disk, and a worker cycles once per handful of tries. Only the
    results of tries this worker still holds are kept: a try requeued as lost while
    it was silent, and perhaps running elsewhere since, keeps no late result. The
    schedulers are woken (on commit) when results were stored.
    """
    with engine.begin() as conn:
        notified = _store(conn, results, name) if results else True
        ids = store_tries.claim_for_worker(conn, limit, queues, DEFAULT_QUEUE, name) if limit > 0 else []
        requests = build(conn, dags, ids) if ids else []
    if not notified:
        notify.notify(engine.url.render_as_string(hide_password=False), notify.SCHEDULER)
    return requests


def release(engine: Engine, ti_ids: list[int], name: str) -> list[int]:
    """Put tries this worker claimed but never started back in the queue (it is stopping)."""
    with engine.begin() as conn:
        given = store_tries.release(conn, ti_ids, name)
        if given:
            notify.notify_in(conn, notify.WORKERS)
    return given


def store_results(engine: Engine, results: list[TaskResult], holder: str | None = None) -> None:
    """Write results for a scheduler to apply, and wake the schedulers.

    With `holder`, only the results of the tries that worker still holds are kept (see `exchange`).
    """
    if not results:
        return
    with engine.begin() as conn:
        notified = _store(conn, results, holder)
    if not notified:
        notify.notify(engine.url.render_as_string(hide_password=False), notify.SCHEDULER)


def _store(conn: Connection, results: list[TaskResult], holder: str | None) -> bool:
    """Store results (with `holder`: only of the tries that worker still holds); True when
    the schedulers' wake-up goes with the commit."""
    stored = store_tries.store_results(conn, [r.to_wire() for r in results], holder)
    if len(stored) < len(results):
        log.warning("dropping the results of %d try(s) requeued as lost meanwhile", len(results) - len(stored))
    return notify.notify_in(conn, notify.SCHEDULER)


def beat(engine: Engine, ti_ids: list[int], name: str) -> list[int]:
    """Tell the schedulers these tries are still running on worker `name`.

    Returns those that are no longer this worker's: ended by a scheduler meanwhile, or
    requeued as lost (this worker was silent too long) and perhaps claimed by another.
    """
    with engine.begin() as conn:
        store_tries.heartbeat(conn, ti_ids, name)
        return store_tries.not_running(conn, ti_ids, name)


class WorkerService:
    """Claims tries from the database and runs them on a local pool of processes.

    Args:
        build: the request builder (`herald.scheduler.requests.build_requests`).
        heartbeat_timeout: the schedulers' heartbeat timeout (`Settings.heartbeat_timeout`):
            this worker beats several times within it.
        prefetch: tries claimed ahead per pool process (`Settings.worker_prefetch`).
        process_groups: what a try starts ends with it (`Settings.try_process_groups`).
        limits: the size caps (`Settings.limits`).
    """

    def __init__(
        self,
        db: Database,
        build: RequestBuilder,
        listener: notify.Listener,
        dags_folder: str,
        concurrency: int,
        queues: list[str] | None,
        name: str,
        heartbeat_timeout: float,
        prefetch: int = 8,
        process_groups: bool = True,
        limits: SizeLimits | None = None,
    ) -> None:
        self.db = db
        self.prefetch = prefetch
        self.heartbeat_every = heartbeat_interval(heartbeat_timeout)
        self.build = build
        self.listener = listener
        self.concurrency = concurrency
        self.queues = queues
        self.name = name
        self.dags: dict[str, DAG] = {}
        self.pool = LocalExecutor(dags_folder, concurrency, process_groups=process_groups, limits=limits)
        self._wake = listener.event(notify.WORKERS)
        self._running: set[int] = set()
        self._started: set[int] = set()
        self._done: list[TaskResult] = []
        #: when the oldest result of `_done` came (monotonic)
        self._done_since = 0.0
        self._stopping = False

    def update(self, dags: dict[str, DAG], files: Mapping[str, Stamp] | None = None) -> None:
        """Use the DAGs of the latest load (for upstream results and timeouts).

        `files` are the files that load checked and imported: the pool imports only those.
        """
        self.dags = dags
        self.pool.reload(files)

    def stop(self) -> None:
        """Stop claiming tries; `run` returns once running ones finish (or the grace ends)."""
        self._stopping = True
        self._wake.set()

    def _on_started(self, started: TaskStarted) -> None:
        # the claim marked the try running; its real start time comes with its result
        self._started.add(started.ti_id)

    def _on_result(self, result: TaskResult) -> None:
        result.hostname = f"{self.name}/{result.hostname}" if result.hostname else self.name
        if not self._done:
            self._done_since = time.monotonic()
        self._done.append(result)
        self._running.discard(result.ti_id)
        self._started.discard(result.ti_id)
        self._wake.set()

    async def run(self, grace: float = 30.0) -> None:
        """Claim, run and report tries until `stop`.

        Each cycle stores the results that came in and claims what the pool has room
        for, in one transaction. The pool has room for `prefetch` tries per process
        beyond those running, so a process that finishes a try starts the next at
        once instead of waiting for the next claim's round trip.

        While the pool has a try queued for each process, nothing is urgent: a cycle
        waits until half the room is free, or the pool runs low, or its oldest result
        has waited `RESULT_HOLD` seconds, so that a busy worker claims and reports in
        batches (one transaction for many tries) instead of one cycle per try.
        """
        self.pool.start(self._on_started, self._on_result)
        heartbeat = asyncio.create_task(self._heartbeat())
        room = self.concurrency * (1 + self.prefetch)
        try:
            while not self._stopping:
                self._wake.clear()
                free = room - len(self._running)
                low = self.pool.waiting() < self.concurrency
                held = time.monotonic() - self._done_since if self._done else 0.0
                due = bool(self._done) and (low or held >= RESULT_HOLD or len(self._done) >= room // 2)
                if due or (free > 0 and low):
                    done, self._done = self._done, []
                    try:
                        requests = await self.db.run(
                            exchange, self.db.engine, self.build, self.dags, done, self.name, free, self.queues
                        )
                    except Exception as exc:
                        log.warning("could not store %d result(s) or claim tasks, will retry: %s", len(done), exc)
                        self._done[:0] = done
                        requests = []
                        await asyncio.sleep(1.0)
                    if requests:
                        self._running.update(r.ti_id for r in requests)
                        self.pool.submit(requests)
                    if requests and len(requests) == free:
                        continue  # more may be queued
                    # (a result or a wake-up that came meanwhile ends this wait at once)
                    held = 0.0
                timeout = IDLE_WAIT if not self._done else max(0.0, RESULT_HOLD - held)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            await self.pool.stop(grace=grace)
            # Claimed but never started: back to the queue for another worker, not a lost try.
            unstarted = sorted(self._running - self._started)
            if unstarted:
                with contextlib.suppress(Exception):
                    await self.db.run(release, self.db.engine, unstarted, self.name)
                self._running.difference_update(unstarted)
            now = utcnow()
            self._done.extend(
                TaskResult(
                    ti_id=i,
                    state=TryState.FAILED,
                    ended_at=now,
                    hostname=self.name,
                    error="the worker was stopped before the task finished",
                    lost=True,  # not the task's failure: it goes back to the queue
                )
                for i in self._running
            )
            self._running.clear()
            await self._flush()
            heartbeat.cancel()

    async def _flush(self) -> None:
        if not self._done:
            return
        done, self._done = self._done, []
        try:
            await self.db.run(exchange, self.db.engine, self.build, self.dags, done, self.name, 0, self.queues)
        except Exception as exc:
            log.warning("could not store %d result(s): %s", len(done), exc)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_every)
            if self._running:
                ended: list[int] = []
                with contextlib.suppress(Exception):
                    ended = await self.db.run(beat, self.db.engine, list(self._running), self.name)
                # a scheduler ended these (their run timed out), or requeued them as lost: stop them
                ended = [i for i in ended if i in self._running]
                if ended:
                    self.pool.cancel(ended)
                    self._running.difference_update(ended)
                    self._started.difference_update(ended)
                    self._wake.set()
