"""`herald worker` with `HERALD_EXECUTOR=celery`: a Celery worker that runs Herald's tries.

The worker's pool processes (prefork) import the DAG files once, when they
start, and again when a file changes. Each message names one try
(`ti_id`, `try_number`, and usually carries what it needs: its run, events and
upstream results); the pool process:

1. claims it (`store.tries.claim_one`: running, under this worker's name, only
   if still queued under that try number). Nothing claimed means a
   duplicate delivery (a redelivered message, a message sent again by a
   scheduler) or a try already failed and retried under a new number: the
   message is acknowledged and nothing runs, so no try runs twice to success;
2. runs it exactly as the local pool does (`worker.run_task`: context, captured
   log, JSON result), sending heartbeats every few seconds while it runs, and
   ends what the try left running (`reaper`, as the local pool's workers do). A
   heartbeat that finds a scheduler ended the try meanwhile (its run timed out,
   it was failed as lost) kills the pool process, and with it the try and what
   it started;
3. writes the result and the log to `task_result` (and wakes the schedulers),
   then returns, and only then is the message acknowledged. A try that the
   scheduler failed as lost while it ran (its heartbeats did not get through)
   and may have started again keeps no late result.

A pool process that dies mid-task leaves its message unacknowledged: it is
requeued (`reject_on_worker_lost`; on Redis, also after the visibility timeout),
finds the try claimed and is dropped, while the try, silent, is put back to the
queue by a scheduler past the heartbeat timeout (a lost worker: none of the
task's retries used) and published again.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from herald.config import Settings
from herald.dagcheck import FileChecker
from herald.executors.base import RequestBuilder
from herald.executors.celery_executor import DEFAULT_QUEUE, TASK_NAME, celery_queue, make_app
from herald.executors.reaper import WorkerKeeper
from herald.executors.records import TaskRequest, TaskResult
from herald.executors.worker import end_leftovers, run_task
from herald.executors.worker_service import heartbeat_interval, store_results
from herald.loader import DagBag, changed, load_folder
from herald.sdk.dag import DAG
from herald.store import tries as store_tries

log = logging.getLogger("herald.celery.worker")


def claim_try(
    engine: Engine,
    build: RequestBuilder,
    dags: dict[str, DAG],
    ti_id: int,
    try_number: int,
    name: str,
    request: TaskRequest | None = None,
) -> TaskRequest | None:
    """Claim one queued try for this worker; None when it is not (or no longer) queued under that number.

    With the `request` its message carried, the claim is one statement; without, the
    request is read from the database in the claiming transaction.
    """
    if request is not None:
        with engine.connect() as conn:
            claimed = store_tries.claim_one(
                conn.execution_options(isolation_level="AUTOCOMMIT"), ti_id, try_number, name
            )
        return request if claimed else None
    with engine.begin() as conn:
        if not store_tries.claim_one(conn, ti_id, try_number, name):
            return None
        requests = build(conn, dags, [ti_id])
    return requests[0] if requests else None


class _PoolProcess:
    """What one Celery pool process keeps: its database engine and the DAGs it imported."""

    def __init__(self, settings: Settings, worker_name: str, build: RequestBuilder, pooled: bool = True) -> None:
        from herald.store.db import make_engine

        self.settings = settings
        self.build = build
        self.name = f"{worker_name}/celery:{os.getpid()}"
        self.engine = make_engine(settings.db_url, pool_size=2)
        # What a try starts ends with it (`reaper`): this process leads a group of its own,
        # which its guard kills when it dies (Celery's hard time limit, the worker killed).
        # Only a prefork pool process runs one try at a time and may do this.
        self.keeper = WorkerKeeper.start() if pooled and settings.try_process_groups else None
        # A file that exits, hangs or crashes when imported is checked apart first and
        # never imported here (it would take this pool process with it).
        self.checker = FileChecker(settings.dag_file_processor_timeout, settings.dag_parsing_processes)
        self.bag: DagBag = load_folder(Path(settings.dags_path), checker=self.checker)
        self._checked = time.monotonic()

    def dags(self) -> dict[str, DAG]:
        """The DAGs, imported again when a file changed (looked at every reload interval)."""
        now = time.monotonic()
        if now - self._checked >= self.settings.dag_reload_interval:
            self._checked = now
            if changed(self.bag):
                self.bag = load_folder(self.bag.folder, checker=self.checker)
        return self.bag.dags

    def run(self, ti_id: int, try_number: int, body: dict[str, Any] | None) -> str:
        dags = self.dags()
        sent = TaskRequest.from_wire(body) if body else None
        request = claim_try(self.engine, self.build, dags, ti_id, try_number, self.name, sent)
        if request is None:
            log.info("try %s (number %s) is not queued any more: duplicate delivery dropped", ti_id, try_number)
            return "skipped"
        held = _Held(ti_id, try_number, time.monotonic())
        stop = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeat, args=(held, stop), daemon=True, name="heartbeat")
        heartbeat.start()
        try:
            message = run_task(dags, request.to_wire(), self.settings.limits)
        finally:
            stop.set()
        heartbeat.join(timeout=5)
        message = end_leftovers(self.keeper, message)
        message.update(ti_id=ti_id, try_number=try_number, hostname=self.name)
        if request.timeout and str(message.get("error") or "").startswith("SoftTimeLimitExceeded"):
            message["error"] = f"timed out after {request.timeout:g}s (timeout={request.timeout:g})"
        result = TaskResult.from_wire(message)
        if not self._still_ours(held):
            # Failed as lost meanwhile (its heartbeats did not reach the database) and
            # perhaps running again elsewhere: this late result must not count.
            log.warning("try %s (number %s) was failed as lost while it ran; its result is dropped", ti_id, try_number)
            return "dropped"
        for attempt in range(10):
            try:
                store_results(self.engine, [result])
                break
            except Exception as exc:
                # Silent meanwhile: past the heartbeat timeout the scheduler fails the try.
                log.warning("could not store the result of try %s (attempt %d): %s", ti_id, attempt + 1, exc)
                time.sleep(min(2.0**attempt, 10.0))
        return str(result.state)

    def _beat(self, held: _Held) -> bool:
        """Record a sign of life; False when the try is no longer this process's (failed as lost)."""
        with self.engine.begin() as conn:
            return store_tries.heartbeat_one(conn, held.ti_id, held.try_number, self.name)

    def _still_ours(self, held: _Held) -> bool:
        if held.lost:
            return False
        if time.monotonic() - held.confirmed < self.settings.heartbeat_timeout / 2:
            # Alive in the database this recently: no scheduler can have failed it yet.
            return True
        try:
            return self._beat(held)
        except Exception:
            return True  # the database is away: store_results retries, and decides nothing

    def _heartbeat(self, held: _Held, stop: threading.Event) -> None:
        while not stop.wait(heartbeat_interval(self.settings.heartbeat_timeout)):
            try:
                if self._beat(held):
                    held.confirmed = time.monotonic()
                else:
                    held.lost = True
                    log.warning(
                        "try %s was ended by a scheduler while running here (failed as lost, or its run "
                        "timed out); stopping it, its result will be dropped",
                        held.ti_id,
                    )
                    if self.keeper is not None:
                        # The try runs in this process: it dies, and its guard ends what the try
                        # started. Celery starts another; the message, given back, finds the try
                        # not queued and is dropped.
                        os.kill(os.getpid(), signal.SIGKILL)
                    return
            except Exception as exc:
                log.warning("heartbeat of try %s failed: %s", held.ti_id, exc)


@dataclasses.dataclass
class _Held:
    """A try this pool process runs: when the database last saw it alive, and whether it was lost."""

    ti_id: int
    try_number: int
    confirmed: float
    lost: bool = False


_process: _PoolProcess | None = None


def build_worker_app(settings: Settings, worker_name: str, build: RequestBuilder) -> Any:
    """The Celery app of a worker: Herald's task, and pool processes that import the DAG files."""
    from celery.signals import worker_process_init  # type: ignore[import-untyped]

    app = make_app(settings)

    def init_pool_process(**_: Any) -> None:
        global _process
        _process = _PoolProcess(settings, worker_name, build)

    # weak=False: the closure would otherwise be collected before any pool process starts.
    worker_process_init.connect(init_pool_process, weak=False)

    @app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def run_try(ti_id: int, try_number: int, request: dict[str, Any] | None = None) -> str:
        global _process
        if _process is None:  # a solo or threads pool: no pool-process start signal
            _process = _PoolProcess(settings, worker_name, build, pooled=False)
        return _process.run(int(ti_id), int(try_number), request)

    return app


def run_worker(
    settings: Settings,
    queues: list[str] | None,
    concurrency: int,
    worker_name: str,
    build: RequestBuilder,
    say: Callable[[str], None] = print,
) -> None:
    """Run a Celery worker until SIGTERM (warm shutdown: running tries finish) or SIGINT."""
    app = build_worker_app(settings, worker_name, build)
    names = queues or [DEFAULT_QUEUE]
    level = settings.log_level.upper()
    say(
        f"Herald Celery worker {worker_name} starting: {concurrency} process(es), queues: {', '.join(names)}, "
        f"broker: {_mask(settings.celery_broker_url or '')}."
    )
    app.worker_main(
        [
            "worker",
            "--queues",
            ",".join(celery_queue(settings.celery_queue_prefix, n) for n in names),
            "--concurrency",
            str(concurrency),
            "--pool",
            "prefork",
            "--hostname",
            f"herald-{os.getpid()}@%h",
            "--loglevel",
            level,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


def _mask(url: str) -> str:
    from herald.sdk.masking import mask_url

    return mask_url(url)
