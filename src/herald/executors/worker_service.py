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
from collections.abc import Mapping

from sqlalchemy import Engine

from herald import notify
from herald.dagcheck import Stamp
from herald.executors.base import RequestBuilder
from herald.executors.local import LocalExecutor
from herald.executors.records import TaskRequest, TaskResult, TaskStarted
from herald.sdk.dag import DAG
from herald.store import tries as store_tries
from herald.store.db import Database
from herald.store.states import TryState
from herald.store.types import utcnow

log = logging.getLogger("herald.worker")

#: the longest time between two heartbeats of a running try
HEARTBEAT_INTERVAL = 5.0
IDLE_WAIT = 1.0
DEFAULT_QUEUE = "default"


def heartbeat_interval(timeout: float) -> float:
    """Seconds between two heartbeats: several within the heartbeat timeout, so that one slow
    beat (a busy database) never makes a live worker look lost, whatever the timeout is set to."""
    return min(HEARTBEAT_INTERVAL, timeout / 4)


def claim_tries(
    engine: Engine, build: RequestBuilder, dags: dict[str, DAG], limit: int, queues: list[str] | None, name: str
) -> list[TaskRequest]:
    """Take up to `limit` queued tries (of `queues`, or of the default queue) for this worker."""
    with engine.begin() as conn:
        ids = store_tries.claim_for_worker(conn, limit, queues, DEFAULT_QUEUE, name)
        return build(conn, dags, ids) if ids else []


def store_results(engine: Engine, results: list[TaskResult], holder: str | None = None) -> None:
    """Write results for a scheduler to apply, and wake the schedulers.

    With `holder`, only the results of tries that worker still holds: a try requeued
    as lost while this worker was silent, and perhaps running elsewhere since, keeps
    no late result from here.
    """
    with engine.begin() as conn:
        if holder is not None:
            ended = set(store_tries.not_running(conn, [r.ti_id for r in results], holder))
            if ended:
                log.warning("dropping the results of %d try(s) requeued as lost meanwhile", len(ended))
                results = [r for r in results if r.ti_id not in ended]
        store_tries.store_results(conn, [r.to_wire() for r in results])
        notified = notify.notify_in(conn, notify.SCHEDULER)
    if not notified:
        notify.notify(engine.url.render_as_string(hide_password=False), notify.SCHEDULER)


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
    ) -> None:
        self.db = db
        self.heartbeat_every = heartbeat_interval(heartbeat_timeout)
        self.build = build
        self.listener = listener
        self.concurrency = concurrency
        self.queues = queues
        self.name = name
        self.dags: dict[str, DAG] = {}
        self.pool = LocalExecutor(dags_folder, concurrency)
        self._wake = listener.event(notify.WORKERS)
        self._running: set[int] = set()
        self._done: list[TaskResult] = []
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
        pass  # claim_tries already marked the try running

    def _on_result(self, result: TaskResult) -> None:
        result.hostname = f"{self.name}/{result.hostname}" if result.hostname else self.name
        self._done.append(result)
        self._running.discard(result.ti_id)
        self._wake.set()

    async def run(self, grace: float = 30.0) -> None:
        """Claim, run and report tries until `stop`."""
        self.pool.start(self._on_started, self._on_result)
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            while not self._stopping:
                self._wake.clear()
                await self._flush()
                free = self.concurrency - len(self._running)
                if free > 0:
                    try:
                        requests = await self.db.run(
                            claim_tries, self.db.engine, self.build, self.dags, free, self.queues, self.name
                        )
                    except Exception as exc:
                        log.warning("could not claim tasks: %s", exc)
                        requests = []
                    if requests:
                        self._running.update(r.ti_id for r in requests)
                        self.pool.submit(requests)
                        continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_WAIT)
        finally:
            await self.pool.stop(grace=grace)
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
            await self.db.run(store_results, self.db.engine, done, self.name)
        except Exception as exc:
            log.warning("could not store %d result(s), will retry: %s", len(done), exc)
            self._done[:0] = done
            await asyncio.sleep(1.0)

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
                    self._wake.set()
