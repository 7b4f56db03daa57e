"""The local executor: a pool of pre-started worker processes fed over pipes.

Starting a Python interpreter and importing the DAG files costs hundreds of
milliseconds; a pre-started worker starts a task in well under one. Results
come back on the event loop through `add_reader`, so no thread waits on a pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from sqlalchemy import Connection as DbConnection

from herald.dagcheck import Stamp
from herald.executors.reaper import end_tree
from herald.executors.records import TaskRequest, TaskResult, TaskStarted
from herald.executors.worker import worker_main
from herald.store.states import TryState
from herald.store.storable import SizeLimits
from herald.store.types import utcnow

log = logging.getLogger("herald.executor")


@dataclass
class _Worker:
    proc: BaseProcess
    conn: Connection
    generation: int
    ready: bool = False
    busy: TaskRequest | None = None
    timer: asyncio.TimerHandle | None = None
    retired: bool = False
    # the worker leads a process group and reaps what its tries leave (`reaper`): stop it with `end_tree`
    group: bool = False
    # dag_id -> (file, mtime_ns, size) of the version this worker imported
    versions: dict[str, tuple[str, int, int]] = field(default_factory=dict)


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


def _worker_context() -> Any:
    """How worker processes start: from a fork server that has imported the worker's code once.

    Never a plain fork of this process (it has threads and open connections). A
    spawned worker would import Herald afresh, and with it the `herald` command's
    own module (multiprocessing re-imports the parent's `__main__`): half a second
    of CPU per worker, paid again at every DAG reload. The fork server pays it
    once; each worker is then a fork of a process with no threads and no
    connections, which dies with this one. Where there is no fork server (not
    POSIX), spawn.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    # The guard first: the server dies with this process (see herald.executors.forkserver).
    ctx.set_forkserver_preload(["herald.executors.forkserver", "herald.executors.worker", "herald.loader"])
    return ctx


class LocalExecutor:
    """Runs task tries on `size` pre-started processes that have the DAG files imported.

    What a try starts ends with it (`herald.executors.reaper`): each worker leads
    a process group of its own and ends what a try left running before it sends
    the result. A try past its timeout, or cancelled, is stopped by killing its
    worker together with every process under it; a worker that dies otherwise
    takes its group with it (its guard), and its try fails with the reason.
    Results come back through `on_result`; the workers die with this process.
    """

    workers_in_process = True
    wake_channel: str | None = None
    needs_requests = True

    def __init__(
        self, dags_folder: str, size: int, *, process_groups: bool = True, limits: SizeLimits | None = None
    ) -> None:
        self.dags_folder = dags_folder
        self.size = size
        # Given to each worker, not read from the environment there: a worker is a fork
        # of the fork server, whose environment is this process's when the first started.
        self._options = (process_groups, limits or SizeLimits())
        self._ctx = _worker_context()
        self._workers: list[_Worker] = []
        self._queue: deque[TaskRequest] = deque()
        self._generation = 0
        self._on_started: Callable[[TaskStarted], None] = lambda s: None
        self._on_result: Callable[[TaskResult], None] = lambda r: None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        # None: workers import the folder as it is (nothing checked it); else only these files.
        self._files: dict[str, Stamp] | None = None

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
        proc = self._ctx.Process(
            target=worker_main,
            args=(child, self.dags_folder, self._files, *self._options),
            daemon=True,
            name="herald-worker",
        )
        proc.start()
        child.close()
        worker = _Worker(proc=proc, conn=parent, generation=self._generation)
        self._workers.append(worker)
        self._loop.add_reader(parent.fileno(), self._readable, worker)

    def submit(self, requests: list[TaskRequest]) -> None:
        """Queue tries; idle workers take them at once."""
        self._queue.extend(requests)
        self._dispatch()

    def waiting(self) -> int:
        """Tries waiting for a free worker."""
        return len(self._queue)

    def queued(self, conn: DbConnection) -> int:
        """Tries waiting for a free worker (held in memory, not in the database)."""
        return len(self._queue)

    def collect(self, conn: DbConnection, now: datetime) -> tuple[list[TaskResult], bool]:
        """Nothing: the pool's results come through `on_result`."""
        return [], False

    def reload(self, files: Mapping[str, Stamp] | None = None) -> None:
        """Replace workers with fresh ones that import the changed DAG files.

        With `files` (`DagBag.files` of the load that changed), the new workers import
        only those files, each only while it is still the version checked: a file
        whose check failed (it exits, hangs, crashes) is never imported by a worker.
        """
        if files is not None:
            self._files = dict(files)
        self._generation += 1
        if self._loop is None:
            return  # not started yet: the workers will import the current files
        # The older workers stay until a new one is ready: meanwhile they run the tries
        # of DAGs whose file did not change, so a slow import stalls only its own DAGs.
        # Those still importing could never stand in: they go now.
        for worker in list(self._workers):
            if worker.generation != self._generation and not worker.ready and worker.busy is None:
                self._retire(worker)
        self._fill()

    def _fill(self) -> None:
        live = [w for w in self._workers if not w.retired and w.generation == self._generation]
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
        for worker in list(self._workers):
            while self._queue and self._idle(worker):
                request = self._next_for(worker)
                if request is None:
                    break
                try:
                    worker.conn.send(request.to_wire())
                except (OSError, BrokenPipeError):
                    self._queue.appendleft(request)
                    break
                except Exception as exc:
                    # One try whose request cannot be sent (a value nested too deep for
                    # pickle...) fails with the reason; the worker takes the next one.
                    self._fail(
                        worker, request, f"its request could not be sent to a worker: {type(exc).__name__}: {exc}"
                    )
                    continue
                worker.busy = request
                if request.timeout:
                    assert self._loop is not None
                    worker.timer = self._loop.call_later(request.timeout, self._timed_out, worker, request)
                self._on_started(TaskStarted(request.ti_id, utcnow(), f"local:{worker.proc.pid}"))
            if not self._queue:
                return

    def _idle(self, worker: _Worker) -> bool:
        return worker.ready and worker.busy is None and not worker.retired

    def _next_for(self, worker: _Worker) -> TaskRequest | None:
        """The first waiting try this worker may run, taken off the queue."""
        if worker.generation == self._generation:
            return self._queue.popleft()
        if self._renewed() or self._files is None:
            return None
        for request in self._queue:
            if self._current(worker, request.dag_id):
                self._queue.remove(request)
                return request
        return None

    def _renewed(self) -> bool:
        """True once a worker of the latest generation is ready (the older ones can go)."""
        return any(w.ready and not w.retired and w.generation == self._generation for w in self._workers)

    def _current(self, worker: _Worker, dag_id: str) -> bool:
        """True when the worker imported the very version of the DAG's file the latest load checked."""
        version = worker.versions.get(dag_id)
        if version is None or self._files is None:
            return False
        path, mtime_ns, size = version
        checked = self._files.get(path)
        return checked is not None and (checked.mtime_ns, checked.size) == (mtime_ns, size)

    def _retire_older(self) -> None:
        for worker in list(self._workers):
            if worker.generation != self._generation and worker.busy is None and not worker.retired:
                self._retire(worker)

    def _readable(self, worker: _Worker) -> None:
        try:
            message: dict[str, Any] = worker.conn.recv()
        except (EOFError, OSError):
            self._died(worker)
            return
        if "ready" in message:
            worker.ready = True
            worker.group = bool(message.get("group"))
            worker.versions = {k: (v[0], int(v[1]), int(v[2])) for k, v in (message.get("dags") or {}).items()}
            if worker.generation == self._generation:
                self._retire_older()
            self._dispatch()
            return
        request, worker.busy = worker.busy, None
        if worker.timer is not None:
            worker.timer.cancel()
            worker.timer = None
        if request is not None:
            message.update(ti_id=request.ti_id, try_number=request.try_number, hostname=f"local:{worker.proc.pid}")
            self._on_result(TaskResult.from_wire(message))
        if worker.generation != self._generation and self._renewed():
            self._retire(worker)
            self._fill()
        self._dispatch()

    def _died(self, worker: _Worker) -> None:
        self._drop(worker)
        worker.proc.join(timeout=2)
        request, worker.busy = worker.busy, None
        if request is not None:
            # Not the task's failure as such: the try goes back to the queue (lost worker).
            self._fail(
                worker,
                request,
                f"the worker process running the task died ({describe_exit(worker.proc.exitcode)})",
                lost=True,
            )
        elif not self._stopping and not worker.retired:
            log.warning("worker %s exited (%s)", worker.proc.pid, describe_exit(worker.proc.exitcode))
        self._fill()
        self._dispatch()

    def _fail(self, worker: _Worker, request: TaskRequest, error: str, lost: bool = False) -> None:
        """Report a try that the pool itself ended (its worker died: `lost`, or it ran out of time)."""
        self._on_result(
            TaskResult(
                ti_id=request.ti_id,
                try_number=request.try_number,
                state=TryState.FAILED,
                ended_at=utcnow(),
                error=error,
                hostname=f"local:{worker.proc.pid}",
                lost=lost,
            )
        )

    def cancel(self, ti_ids: list[int]) -> None:
        """Drop these tries if they wait for a worker; kill the workers running them (no result)."""
        wanted = set(ti_ids)
        if not wanted:
            return
        self._queue = deque(r for r in self._queue if r.ti_id not in wanted)
        for worker in list(self._workers):
            if worker.busy is not None and worker.busy.ti_id in wanted:
                log.info("stopping try %s: the scheduler ended it", worker.busy.ti_id)
                worker.busy = None
                self._drop(worker)
                self._kill(worker)
        self._fill()
        self._dispatch()

    def _kill(self, worker: _Worker) -> None:
        """Kill a worker and, when it leads a group, every process under it (what its try started)."""
        # exitcode polls: a worker already dead is reaped here, and its pid never signalled again.
        if worker.group and worker.proc.exitcode is None and worker.proc.pid is not None:
            end_tree(worker.proc.pid)
        else:
            worker.proc.kill()
        worker.proc.join(timeout=2)

    def _timed_out(self, worker: _Worker, request: TaskRequest) -> None:
        if worker.busy is not request:
            return
        worker.busy = None
        worker.timer = None
        self._drop(worker)
        self._kill(worker)
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
            if worker.busy is not None:  # still running its try after the grace: with what it started
                self._kill(worker)
        for proc in self._all_procs():
            proc.join(timeout=1)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=1)

    def _all_procs(self) -> list[BaseProcess]:
        return [p for p in multiprocessing.active_children() if p.name == "herald-worker"]
