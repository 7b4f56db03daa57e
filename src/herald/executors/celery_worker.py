"""`herald worker` with `HERALD_EXECUTOR=celery`: a Celery worker that runs Herald's tries.

The worker's pool processes (prefork) import the DAG files once, when they
start, and again when a file changes. Each message names a few tries
(`ti_id`, `try_number`, and usually what each needs: its run, events and
upstream results; see `celery_executor.batches`); the pool process:

1. claims them in one statement (`store.tries.claim_tries`: running, under this
   pool process's name, only those still queued under their number). A try not
   claimed is a duplicate delivery (a redelivered message, a message sent again
   by a scheduler) or a try already failed and retried under a new number:
   nothing of it runs, so no try runs twice to success;
2. runs the claimed tries one after the other exactly as the local pool does
   (`worker.run_task`: context, captured log, JSON result), ending what each
   left running (`reaper`, as the local pool's workers do). The tries of a
   message that have not started `HAND_ON_AFTER` seconds after it began are
   handed on: they go back to the queue and out again, one Celery message each,
   for any free pool process. A message of quick tries costs a few database
   round trips, not a few per try, and slow ones hold up nothing. One thread beats
   for the message's unfinished tries every few seconds; a beat that finds a
   scheduler ended the running try meanwhile (its run timed out, it was failed as
   lost) writes the results it holds, gives the tries it has not started back to
   the queue and kills the pool process, and with it the try and what it started;
3. writes the results and logs to `task_result` (and wakes the schedulers) in one
   transaction, keeping only those of tries it still holds (a try failed as lost
   while it ran, perhaps running again elsewhere, keeps no late result). The
   same thread writes a finished try's result within `RESULT_DELAY` when the
   next try of the message takes longer; the rest are written when the last try
   ends. Then the task returns, and only then is the message acknowledged.

A pool process that dies mid-message leaves its message unacknowledged: it is
requeued (`reject_on_worker_lost`; on Redis, also after the visibility timeout)
and runs what is still queued of it (the tries given back above; a claimed try
is not queued and is dropped), while a claimed try that never finished, silent,
is put back to the queue by a scheduler past the heartbeat timeout (a lost
worker: none of the task's retries used) and published again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from herald.config import Settings
from herald.dagcheck import FileChecker
from herald.executors.base import RequestBuilder
from herald.executors.celery_executor import (
    BATCH_TASK_NAME,
    DEFAULT_QUEUE,
    TASK_NAME,
    celery_queue,
    make_app,
    send,
)
from herald.executors.reaper import WorkerKeeper
from herald.executors.records import TaskRequest, TaskResult
from herald.executors.worker import end_leftovers, run_task
from herald.executors.worker_service import heartbeat_interval, store_results
from herald.loader import DagBag, changed, load_folder
from herald.sdk.dag import DAG
from herald.store import tries as store_tries

log = logging.getLogger("herald.celery.worker")

#: the longest a finished try's result waits to be written with the next ones of its message
RESULT_DELAY = 0.05
#: a message running this long (seconds) hands the tries still waiting in it on
HAND_ON_AFTER = 1.0

#: one try of a message: ti_id, try_number, and its request (None: read it from the database)
Item = Sequence[Any]


def claim_tries(
    engine: Engine, build: RequestBuilder, dags: dict[str, DAG], items: Sequence[Item], name: str
) -> list[TaskRequest]:
    """Claim a message's tries for this worker, in the message's order; those not (or no longer) queued
    under their number are left out.

    With every request in the message, the claim is one statement; otherwise the
    missing requests are read from the database in the claiming transaction.
    """
    sent = {int(i[0]): TaskRequest.from_wire(i[2]) for i in items if i[2]}
    wanted = [(int(i[0]), int(i[1])) for i in items]
    if all(ti_id in sent for ti_id, _ in wanted):
        with engine.connect() as conn:
            claimed = set(store_tries.claim_tries(conn.execution_options(isolation_level="AUTOCOMMIT"), wanted, name))
    else:
        with engine.begin() as conn:
            claimed = set(store_tries.claim_tries(conn, wanted, name))
            missing = [ti_id for ti_id, _ in wanted if ti_id in claimed and ti_id not in sent]
            if missing:
                sent.update((r.ti_id, r) for r in build(conn, dags, missing))
    return [sent[ti_id] for ti_id, _ in wanted if ti_id in claimed and ti_id in sent]


class _Batch:
    """The tries of one message in a pool process: which runs, which wait, which results wait to be written."""

    def __init__(self, requests: list[TaskRequest]) -> None:
        self.requests = {r.ti_id: r for r in requests}
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        #: claimed, and not finished or finished with the result not yet written:
        #: ti_id -> try_number (what the heartbeats are for)
        self.held = {r.ti_id: r.try_number for r in requests}
        self.waiting = [r.ti_id for r in requests]
        self.running: int | None = None
        #: when the message's first try started (monotonic)
        self.began = time.monotonic()
        #: ended by a scheduler while held here: not run, or their results not kept
        self.ended: set[int] = set()
        self.results: list[TaskResult] = []
        self.oldest = 0.0
        self.done = False
        #: when the database last said these tries are this process's (the claim, then each beat)
        self.confirmed = time.monotonic()

    def next(self) -> int | None:
        """The next try to run (None: none left, or the process is about to die)."""
        with self.lock:
            while self.waiting:
                ti_id = self.waiting.pop(0)
                if ti_id not in self.ended:
                    self.running = ti_id
                    return ti_id
                self.held.pop(ti_id, None)
            self.running = None
            return None

    def finished(self, result: TaskResult) -> None:
        with self.lock:
            self.running = None
            if not self.results:
                self.oldest = time.monotonic()
            self.results.append(result)
            self.wake.notify()

    def take_results(self) -> list[TaskResult]:
        with self.lock:
            taken, self.results = self.results, []
            return taken

    def take_waiting(self) -> list[int]:
        """The tries still waiting their turn, taken away from this message (handed on)."""
        with self.lock:
            taken = [ti_id for ti_id in self.waiting if ti_id not in self.ended]
            self.waiting = []
            for ti_id in taken:
                self.held.pop(ti_id, None)
            return taken

    def give_back(self, ti_ids: list[int]) -> None:
        """Tries that could not be handed on wait their turn again."""
        with self.lock:
            self.waiting[:0] = ti_ids
            self.held.update((i, self.requests[i].try_number) for i in ti_ids)

    def written(self, results: list[TaskResult]) -> None:
        with self.lock:
            for r in results:
                self.held.pop(r.ti_id, None)


class _PoolProcess:
    """What one Celery pool process keeps: its database engine and the DAGs it imported."""

    def __init__(
        self,
        settings: Settings,
        worker_name: str,
        build: RequestBuilder,
        pooled: bool = True,
        hand_on: Callable[[list[TaskRequest]], None] | None = None,
    ) -> None:
        from herald.store.db import make_engine

        self.settings = settings
        self.build = build
        #: publishes tries again, one message each (None: tries wait their turn in their message)
        self.hand_on = hand_on
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

    def run(self, items: Sequence[Item]) -> str:
        """Claim, run and report the tries of one message; returns what became of them."""
        dags = self.dags()
        claimed_at = time.monotonic()
        requests = claim_tries(self.engine, self.build, dags, items, self.name)
        if len(requests) < len(items):
            dropped = len(items) - len(requests)
            log.info("%d of %d try(s) not queued any more: duplicate delivery dropped", dropped, len(items))
        if not requests:
            return "skipped"
        by_id = {r.ti_id: r for r in requests}
        batch = _Batch(requests)
        batch.confirmed = claimed_at
        tender = threading.Thread(target=self._tend, args=(batch,), daemon=True, name="heartbeat")
        tender.start()
        states = []
        try:
            while (ti_id := batch.next()) is not None:
                request = by_id[ti_id]
                message = run_task(dags, request.to_wire(), self.settings.limits)
                message = end_leftovers(self.keeper, message)
                message.update(ti_id=ti_id, try_number=request.try_number, hostname=self.name)
                if request.timeout and str(message.get("error") or "").startswith("SoftTimeLimitExceeded"):
                    message["error"] = f"timed out after {request.timeout:g}s (timeout={request.timeout:g})"
                result = TaskResult.from_wire(message)
                states.append(str(result.state))
                batch.finished(result)
        finally:
            with batch.lock:
                batch.done = True
                batch.wake.notify()
            tender.join(timeout=30)
        self._store(batch, batch.take_results(), final=True)
        return ",".join(states)

    def _store(self, batch: _Batch, results: list[TaskResult], final: bool) -> None:
        """Write results (only of the tries this process still holds), retrying a failing database."""
        for attempt in range(10 if final else 1):
            # Held here this recently (claimed, or a beat said so): no scheduler can have
            # failed them as lost yet, which takes a whole heartbeat timeout of silence.
            # Otherwise the write keeps only the results of the tries still held.
            # (A try a scheduler ended meanwhile, for its run's timeout, is filtered too.)
            recent = time.monotonic() - batch.confirmed < self.settings.heartbeat_timeout / 2 and not batch.ended
            try:
                store_results(self.engine, results, holder=None if recent else self.name)
                batch.written(results)
                return
            except Exception as exc:
                # Silent meanwhile: past the heartbeat timeout the scheduler fails the tries.
                log.warning("could not store %d result(s) (attempt %d): %s", len(results), attempt + 1, exc)
                if final:
                    time.sleep(min(2.0**attempt, 10.0))
        if not final:
            raise RuntimeError("results not stored")

    def _tend(self, batch: _Batch) -> None:
        """The message's other thread: heartbeats for its held tries, and results written soon."""
        every = heartbeat_interval(self.settings.heartbeat_timeout)
        beat_at = time.monotonic() + every
        while True:
            with batch.lock:
                while not batch.done:
                    now = time.monotonic()
                    due = beat_at
                    if batch.results:
                        due = min(due, batch.oldest + RESULT_DELAY)
                    if self.hand_on is not None and batch.waiting:
                        due = min(due, batch.began + HAND_ON_AFTER)
                    if now >= due:
                        break
                    batch.wake.wait(due - now)
                if batch.done:
                    return
                held = sorted(batch.held.items())
                slow = bool(batch.waiting) and now >= batch.began + HAND_ON_AFTER
            if slow and self.hand_on is not None:
                self._hand_on(batch, self.hand_on)
            now = time.monotonic()
            if now >= beat_at:
                beat_at = now + every
                try:
                    self._beat(batch, held)
                except Exception as exc:
                    log.warning("heartbeat of %d try(s) failed: %s", len(held), exc)
            results = batch.take_results() if batch.results and now >= batch.oldest + RESULT_DELAY else []
            if results:
                try:
                    self._store(batch, results, final=False)
                except Exception:
                    with batch.lock:  # the last write (with retries) takes them
                        batch.results[:0] = results

    def _hand_on(self, batch: _Batch, hand_on: Callable[[list[TaskRequest]], None]) -> None:
        """Give the tries waiting behind a slow one back to the queue, and publish them again."""
        waiting = batch.take_waiting()
        try:
            with self.engine.begin() as conn:
                given = set(store_tries.release(conn, waiting, self.name))
        except Exception as exc:
            log.warning("could not hand %d try(s) on, they wait their turn: %s", len(waiting), exc)
            batch.give_back(waiting)
            return
        try:
            hand_on([batch.requests[i] for i in waiting if i in given])
        except Exception as exc:  # queued in the database: a scheduler's resend sweep sends them
            log.warning("could not publish %d try(s) handed on (they will be sent again): %s", len(given), exc)

    def _beat(self, batch: _Batch, held: list[tuple[int, int]]) -> None:
        """Record a sign of life of the held tries; act on those a scheduler ended meanwhile."""
        asked = time.monotonic()
        with self.engine.begin() as conn:
            ours = set(store_tries.heartbeat_tries(conn, held, self.name))
        ended = {ti_id for ti_id, _ in held if ti_id not in ours}
        if not ended:
            batch.confirmed = asked
            return
        with batch.lock:
            batch.ended |= ended
            running = batch.running
            if running not in ended:
                return  # tries waiting their turn: never started
            log.warning(
                "try %s was ended by a scheduler while running here (failed as lost, or its run timed out); "
                "stopping it, its result will be dropped",
                running,
            )
            if self.keeper is None:
                return  # cannot be stopped here: it runs to its end, and its result is dropped
            # The try runs in this process: it dies, and its guard ends what the try
            # started. Before that, what this process holds is handed on: results written,
            # tries not started given back to the queue (Celery delivers the message again,
            # and what is queued of it runs). The lock stays held: no other try starts.
            unstarted = [ti_id for ti_id in batch.waiting if ti_id not in batch.ended]
            results, batch.results = batch.results, []
            with contextlib.suppress(Exception):
                store_results(self.engine, results, holder=self.name)
            with contextlib.suppress(Exception), self.engine.begin() as conn:
                store_tries.release(conn, unstarted, self.name)
            os.kill(os.getpid(), signal.SIGKILL)


_process: _PoolProcess | None = None


def build_worker_app(settings: Settings, worker_name: str, build: RequestBuilder) -> Any:
    """The Celery app of a worker: Herald's task, and pool processes that import the DAG files."""
    from celery.signals import worker_process_init  # type: ignore[import-untyped]

    app = make_app(settings)

    def hand_on(requests: list[TaskRequest]) -> None:
        send(app, settings.celery_queue_prefix, [[r] for r in requests])

    def init_pool_process(**_: Any) -> None:
        global _process
        _process = _PoolProcess(settings, worker_name, build, hand_on=hand_on)

    # weak=False: the closure would otherwise be collected before any pool process starts.
    worker_process_init.connect(init_pool_process, weak=False)

    def pool_process() -> _PoolProcess:
        global _process
        if _process is None:  # a solo or threads pool: no pool-process start signal
            _process = _PoolProcess(settings, worker_name, build, pooled=False, hand_on=hand_on)
        return _process

    @app.task(name=BATCH_TASK_NAME, acks_late=True, reject_on_worker_lost=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def run_tries(items: list[list[Any]]) -> str:
        return pool_process().run(items)

    # A message from a scheduler of an earlier version (one try per message) still runs.
    @app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def run_try(ti_id: int, try_number: int, request: dict[str, Any] | None = None) -> str:
        return pool_process().run([[ti_id, try_number, request]])

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
