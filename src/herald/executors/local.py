"""The local executor: a pool of pre-started worker processes fed over pipes.

Starting a Python interpreter and importing the DAG files costs hundreds of
milliseconds; a pre-started worker starts a task in well under one. Results
come back on the event loop through `add_reader`, so no thread waits on a pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from herald.executors.base import TaskRequest, TaskResult, TaskStarted
from herald.executors.worker import worker_main
from herald.store.types import utcnow

log = logging.getLogger("herald.executor")
_REQUEST_FIELDS = dataclasses.fields(TaskRequest)


@dataclass
class _Worker:
    proc: BaseProcess
    conn: Connection
    generation: int
    ready: bool = False
    busy: TaskRequest | None = None
    timer: asyncio.TimerHandle | None = None
    retired: bool = False


def describe_exit(code: int | None) -> str:
    """`exit code 3` or `signal SIGKILL`, for a worker's death."""
    if code is None:
        return "an unknown cause"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class LocalExecutor:
    """Runs task tries on `size` pre-started processes that have the DAG files imported.

    A task that kills its worker (segfault, `os._exit`, SIGKILL) fails with that
    reason, and the pool starts a replacement. A try past its timeout is killed.
    """

    def __init__(self, dags_folder: str, size: int) -> None:
        self.dags_folder = dags_folder
        self.size = size
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._queue: deque[TaskRequest] = deque()
        self._generation = 0
        self._on_started: Callable[[TaskStarted], None] = lambda s: None
        self._on_result: Callable[[TaskResult], None] = lambda r: None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    def start(self, on_started: Callable[[TaskStarted], None], on_result: Callable[[TaskResult], None]) -> None:
        """Start the pool; callbacks run on the calling event loop."""
        self._loop = asyncio.get_running_loop()
        self._on_started = on_started
        self._on_result = on_result
        for _ in range(self.size):
            self._spawn()

    def _spawn(self) -> None:
        assert self._loop is not None
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=worker_main, args=(child, self.dags_folder), daemon=True, name="herald-worker")
        proc.start()
        child.close()
        worker = _Worker(proc=proc, conn=parent, generation=self._generation)
        self._workers.append(worker)
        self._loop.add_reader(parent.fileno(), self._readable, worker)

    def submit(self, requests: list[TaskRequest]) -> None:
        """Queue tries; idle workers take them at once."""
        self._queue.extend(requests)
        self._dispatch()

    def queued(self) -> int:
        """Tries waiting for a free worker."""
        return len(self._queue)

    def reload(self) -> None:
        """Replace workers with fresh ones that import the changed DAG files."""
        self._generation += 1
        if self._loop is None:
            return  # not started yet: the workers will import the current files
        for worker in list(self._workers):
            if worker.busy is None:
                self._retire(worker)
        self._fill()

    def _fill(self) -> None:
        live = [w for w in self._workers if not w.retired]
        for _ in range(self.size - len(live)):
            if not self._stopping:
                self._spawn()

    def _retire(self, worker: _Worker) -> None:
        worker.retired = True
        with contextlib.suppress(OSError, BrokenPipeError):
            worker.conn.send(None)
        self._drop(worker)

    def _drop(self, worker: _Worker) -> None:
        assert self._loop is not None
        with contextlib.suppress(Exception):
            self._loop.remove_reader(worker.conn.fileno())
        if worker.timer is not None:
            worker.timer.cancel()
        with contextlib.suppress(Exception):
            worker.conn.close()
        if worker in self._workers:
            self._workers.remove(worker)

    def _dispatch(self) -> None:
        for worker in self._workers:
            if not self._queue:
                return
            if worker.ready and worker.busy is None and not worker.retired and worker.generation == self._generation:
                request = self._queue.popleft()
                try:
                    # A shallow dict: pickling copies the nested values anyway (asdict deep-copies first).
                    worker.conn.send({f.name: getattr(request, f.name) for f in _REQUEST_FIELDS})
                except (OSError, BrokenPipeError):
                    self._queue.appendleft(request)
                    continue
                worker.busy = request
                if request.timeout:
                    assert self._loop is not None
                    worker.timer = self._loop.call_later(request.timeout, self._timed_out, worker, request)
                self._on_started(TaskStarted(request.ti_id, utcnow(), f"local:{worker.proc.pid}"))

    def _readable(self, worker: _Worker) -> None:
        try:
            message: dict[str, Any] = worker.conn.recv()
        except (EOFError, OSError):
            self._died(worker)
            return
        if "ready" in message:
            worker.ready = True
            self._dispatch()
            return
        request, worker.busy = worker.busy, None
        if worker.timer is not None:
            worker.timer.cancel()
            worker.timer = None
        message.pop("ti_id", None)
        if request is not None:
            message["hostname"] = f"local:{worker.proc.pid}"
            self._on_result(TaskResult(ti_id=request.ti_id, try_number=request.try_number, **message))
        if worker.generation != self._generation:
            self._retire(worker)
            self._fill()
        self._dispatch()

    def _died(self, worker: _Worker) -> None:
        self._drop(worker)
        worker.proc.join(timeout=2)
        request, worker.busy = worker.busy, None
        if request is not None:
            self._fail(
                worker, request, f"the worker process running the task died ({describe_exit(worker.proc.exitcode)})"
            )
        elif not self._stopping and not worker.retired:
            log.warning("worker %s exited (%s)", worker.proc.pid, describe_exit(worker.proc.exitcode))
        self._fill()
        self._dispatch()

    def _fail(self, worker: _Worker, request: TaskRequest, error: str) -> None:
        """Report a try that the pool itself ended (its worker died, or it ran out of time)."""
        self._on_result(
            TaskResult(
                ti_id=request.ti_id,
                try_number=request.try_number,
                state="failed",
                ended_at=utcnow(),
                error=error,
                hostname=f"local:{worker.proc.pid}",
            )
        )

    def _timed_out(self, worker: _Worker, request: TaskRequest) -> None:
        if worker.busy is not request:
            return
        worker.busy = None
        worker.timer = None
        self._drop(worker)
        worker.proc.kill()
        worker.proc.join(timeout=2)
        self._fail(
            worker,
            request,
            f"timed out after {request.timeout:g}s (timeout={request.timeout:g}); the worker was killed",
        )
        self._fill()
        self._dispatch()

    async def stop(self, grace: float = 5.0) -> None:
        """Let running tries finish for `grace` seconds, then stop every worker."""
        self._stopping = True
        self._queue.clear()
        deadline = asyncio.get_running_loop().time() + grace
        while any(w.busy for w in self._workers) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for worker in list(self._workers):
            with contextlib.suppress(OSError, BrokenPipeError):
                worker.conn.send(None)
            self._drop(worker)
        for proc in self._all_procs():
            proc.join(timeout=1)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=1)

    def _all_procs(self) -> list[BaseProcess]:
        return [p for p in multiprocessing.active_children() if p.name == "herald-worker"]
