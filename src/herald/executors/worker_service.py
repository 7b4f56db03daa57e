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
from dataclasses import asdict
from typing import Any

from sqlalchemy import Engine, insert, or_, select, update

from herald import notify
from herald.executors.base import TaskRequest, TaskResult, TaskStarted
from herald.executors.local import LocalExecutor
from herald.scheduler.scheduler import build_requests
from herald.sdk.dag import DAG
from herald.store import tables as t
from herald.store.db import Database
from herald.store.types import utcnow

log = logging.getLogger("herald.worker")

HEARTBEAT_INTERVAL = 5.0
IDLE_WAIT = 1.0
DEFAULT_QUEUE = "default"


def claim_tries(
    engine: Engine, dags: dict[str, DAG], limit: int, queues: list[str] | None, name: str
) -> list[TaskRequest]:
    """Take up to `limit` queued tries (of `queues`, or of the default queue) for this worker."""
    ti = t.task_instance
    now = utcnow()
    with engine.begin() as conn:
        q = select(ti.c.id).where(ti.c.state == "queued")
        if queues:
            q = q.where(ti.c.queue.in_(queues))
        else:
            q = q.where(or_(ti.c.queue.is_(None), ti.c.queue == DEFAULT_QUEUE))
        ids = [
            int(i) for i in conn.execute(q.order_by(ti.c.id).limit(limit).with_for_update(skip_locked=True)).scalars()
        ]
        if not ids:
            return []
        conn.execute(
            update(ti).where(ti.c.id.in_(ids)).values(state="running", started_at=now, hostname=name, heartbeat_at=now)
        )
        return build_requests(conn, dags, ids)


def store_results(engine: Engine, results: list[TaskResult]) -> None:
    """Write results for a scheduler to apply, and wake the schedulers."""
    rows = []
    for r in results:
        row: dict[str, Any] = asdict(r)
        rows.append(
            {
                k: row[k]
                for k in (
                    "ti_id",
                    "try_number",
                    "state",
                    "result",
                    "error",
                    "log",
                    "outlet_extras",
                    "started_at",
                    "ended_at",
                    "hostname",
                )
            }
        )
    with engine.begin() as conn:
        conn.execute(insert(t.task_result), rows)
        notified = notify.notify_in(conn, notify.SCHEDULER)
    if not notified:
        notify.notify(engine.url.render_as_string(hide_password=False), notify.SCHEDULER)


def beat(engine: Engine, ti_ids: list[int]) -> None:
    """Tell the schedulers these tries are still running."""
    ti = t.task_instance
    with engine.begin() as conn:
        conn.execute(update(ti).where(ti.c.id.in_(ti_ids), ti.c.state == "running").values(heartbeat_at=utcnow()))


class WorkerService:
    """Claims tries from the database and runs them on a local pool of processes."""

    def __init__(
        self,
        db: Database,
        listener: notify.Listener,
        dags_folder: str,
        concurrency: int,
        queues: list[str] | None,
        name: str,
    ) -> None:
        self.db = db
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

    def update(self, dags: dict[str, DAG]) -> None:
        """Use the DAGs of the latest load (for upstream results and timeouts)."""
        self.dags = dags
        self.pool.reload()

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
                            claim_tries, self.db.engine, self.dags, free, self.queues, self.name
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
                    state="failed",
                    ended_at=now,
                    hostname=self.name,
                    error="the worker was stopped before the task finished",
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
            await self.db.run(store_results, self.db.engine, done)
        except Exception as exc:
            log.warning("could not store %d result(s), will retry: %s", len(done), exc)
            self._done[:0] = done
            await asyncio.sleep(1.0)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            if self._running:
                with contextlib.suppress(Exception):
                    await self.db.run(beat, self.db.engine, list(self._running))
