"""The database queue: tries stay `queued` in the database for `herald worker` processes.

The scheduler side of `herald worker`: the pass that queued tries wakes the
workers (`workers` channel, delivered on commit); any number of workers claim
them with SKIP LOCKED and write results to `task_result`, which a scheduler
claims in its pass (`collect`), together with the running tries whose worker
stopped sending heartbeats (lost: back to the queue without using a retry, a few
times at most, then failed with the reason).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from sqlalchemy import Connection

from herald import notify
from herald.dagcheck import Stamp
from herald.executors.records import TaskRequest, TaskResult, TaskStarted
from herald.store import tries as store_tries
from herald.store.states import TryState

#: results claimed per pass; more are taken in the next pass at once
RESULT_SCAN = 1000


class DatabaseExecutor:
    """Leaves tries queued in the database; their results come back through `task_result`.

    Args:
        heartbeat_timeout: seconds of silence after which a running try's worker is presumed dead.
        max_waiting_tries: the back-pressure limit (queued tries are counted up to it).
        lost_every: seconds between two looks for lost tries (default: a quarter of the
            timeout, at most 1 s); a busy cluster passes every few milliseconds, and each look
            reads every running try.
    """

    workers_in_process = False
    wake_channel: str | None = notify.WORKERS
    #: workers build a try's request in the transaction that claims it
    needs_requests = False

    def __init__(self, heartbeat_timeout: float, max_waiting_tries: int, lost_every: float | None = None) -> None:
        self.heartbeat_timeout = heartbeat_timeout
        self.max_waiting_tries = max_waiting_tries
        every = min(1.0, heartbeat_timeout / 4) if lost_every is None else lost_every
        self._lost_every = timedelta(seconds=every)
        self._lost_next: datetime | None = None

    def start(self, on_started: Callable[[TaskStarted], None], on_result: Callable[[TaskResult], None]) -> None:
        """Nothing to start: the workers are processes of their own."""

    def collect(self, conn: Connection, now: datetime) -> tuple[list[TaskResult], bool]:
        """Results written by workers (claimed, so no other scheduler applies them), and lost tries."""
        rows = store_tries.claim_results(conn, RESULT_SCAN)
        results = [TaskResult.from_wire(r) for r in rows]
        timeout = self.heartbeat_timeout
        if self._lost_next is not None and now < self._lost_next:
            return results, len(rows) == RESULT_SCAN
        self._lost_next = now + self._lost_every
        results += [
            TaskResult(
                ti_id=int(r.id),
                state=TryState.FAILED,
                ended_at=now,
                hostname=r.hostname,
                error=f"the worker running the task ({r.hostname}) stopped sending heartbeats for "
                f"{timeout:g}s; it is presumed dead",
                lost=True,
            )
            for r in store_tries.lost(conn, now, timeout)
        ]
        return results, len(rows) == RESULT_SCAN

    def queued(self, conn: Connection) -> int:
        """Queued tries in the database, counted up to the back-pressure limit."""
        return store_tries.count_queued(conn, self.max_waiting_tries)

    def submit(self, requests: list[TaskRequest]) -> None:
        """Nothing to send: the tries are queued in the database and the workers were woken."""

    def cancel(self, ti_ids: list[int]) -> None:
        """Nothing to send: the tries are no longer queued or running in the database.

        A queued one is never claimed. A `herald worker` running one sees it at its next
        heartbeat (every few seconds) and kills the process running it; a Celery worker
        sees it at its next heartbeat too, kills the try's process group and drops the
        result.
        """

    def reload(self, files: Mapping[str, Stamp] | None = None) -> None:
        """Workers reload (and check) their own DAG files."""

    async def stop(self, grace: float) -> None:
        """Nothing to stop."""
        await asyncio.sleep(0)
