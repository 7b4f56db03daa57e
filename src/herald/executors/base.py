"""The executor contract: what a scheduler hands an executor, and what comes back.

Every executor is handed the tries a scheduler pass queued, by `submit`, after
the pass committed. Results come back either through the `on_result` callback
(a pool in this process) or through the database, which the scheduler reads in
its pass with `collect`. Nothing here knows the scheduler: a request builder is
handed in by whoever assembles the process (`herald.standalone`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection

from herald.dagcheck import Stamp
from herald.executors.records import TaskRequest, TaskResult, TaskStarted
from herald.sdk.dag import DAG

__all__ = ["Executor", "RequestBuilder", "TaskRequest", "TaskResult", "TaskStarted"]

#: builds the requests of queued tries (`herald.scheduler.requests.build_requests`)
RequestBuilder = Callable[[Connection, dict[str, DAG], list[int]], list[TaskRequest]]


class Executor(Protocol):
    """Runs task tries and reports their start and end.

    Attributes:
        workers_in_process: True when the workers live and die with this process:
            after a restart, tries left running are failed (their worker is gone)
            and queued ones are handed to `submit` again.
        wake_channel: the wake-up channel notified in the transaction that queued
            tries (workers that poll the database), or None.
        needs_requests: False when the workers build each request themselves as
            they claim the try (the database queue): the pass then builds none.
    """

    workers_in_process: bool
    wake_channel: str | None
    needs_requests: bool

    def start(self, on_started: Callable[[TaskStarted], None], on_result: Callable[[TaskResult], None]) -> None:
        """Start the workers; the callbacks run on the event loop."""
        ...

    def collect(self, conn: Connection, now: datetime) -> tuple[list[TaskResult], bool]:
        """In a scheduler pass: results that came back through the database, and whether more wait."""
        ...

    def queued(self, conn: Connection) -> int:
        """Tries waiting for a free worker (the back-pressure budget counts them)."""
        ...

    def submit(self, requests: list[TaskRequest]) -> None:
        """Run these tries, already committed as queued."""
        ...

    def cancel(self, ti_ids: list[int]) -> None:
        """Stop these tries: the scheduler already ended them in the database (a timed-out run).

        A try still waiting for a worker is dropped; a running one is killed with its
        process. No result is reported for them.
        """
        ...

    def reload(self, files: Mapping[str, Stamp] | None = None) -> None:
        """Let workers pick up changed DAG files (between tasks).

        `files` are the files this process checked and imported, with the version
        imported (`DagBag.files`): workers in this process import only those.
        """
        ...

    async def stop(self, grace: float) -> None:
        """Stop the workers, giving running tasks `grace` seconds to finish."""
        ...
