"""`herald worker` with `HERALD_EXECUTOR=celery`: a Celery worker that runs Herald's tries.

The worker's pool processes (prefork) import the DAG files once, when they
start, and again when a file changes. Each message names one try
(`ti_id`, `try_number`, and usually carries what it needs: its run, events and
upstream results); the pool process:

1. claims it: `UPDATE task_instance SET state='running', hostname=... WHERE
   id=... AND state='queued' AND try_number=...`. Nothing claimed means a
   duplicate delivery (a redelivered message, a message sent again by a
   scheduler) or a try already failed and retried under a new number: the
   message is acknowledged and nothing runs, so no try runs twice to success;
2. runs it exactly as the local pool does (`worker.run_task`: context, captured
   log, JSON result), sending heartbeats every few seconds while it runs;
3. writes the result and the log to `task_result` (and wakes the schedulers),
   then returns, and only then is the message acknowledged. A try that the
   scheduler failed as lost while it ran (its heartbeats did not get through)
   and may have started again keeps no late result.

A pool process that dies mid-task leaves its message unacknowledged: it is
requeued (`reject_on_worker_lost`; on Redis, also after the visibility timeout),
finds the try claimed and is dropped, while the try, silent, is failed by the
scheduler's heartbeat timeout with the reason and retried if it may be.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, update

from herald.config import Settings
from herald.executors.base import TaskRequest, TaskResult
from herald.executors.celery_executor import DEFAULT_QUEUE, TASK_NAME, celery_queue, make_app
from herald.executors.worker import run_task
from herald.executors.worker_service import HEARTBEAT_INTERVAL, store_results
from herald.loader import DagBag, changed, load_folder
from herald.scheduler.scheduler import HEARTBEAT_TIMEOUT, build_requests
from herald.sdk.dag import DAG
from herald.store import tables as t
from herald.store.types import utcnow

log = logging.getLogger("herald.celery.worker")


def claim_try(
    engine: Engine, dags: dict[str, DAG], ti_id: int, try_number: int, name: str, request: TaskRequest | None = None
) -> TaskRequest | None:
    """Claim one queued try for this worker; None when it is not (or no longer) queued under that number.

    With the `request` its message carried, the claim is one statement; without, the
    request is read from the database in the claiming transaction.
    """
    ti = t.task_instance
    now = utcnow()
    claim = (
        update(ti)
        .where(ti.c.id == ti_id, ti.c.state == "queued", ti.c.try_number == try_number)
        .values(state="running", started_at=now, hostname=name, heartbeat_at=now)
    )
    if request is not None:
        with engine.connect() as conn:
            claimed = conn.execution_options(isolation_level="AUTOCOMMIT").execute(claim).rowcount
        return request if claimed else None
    with engine.begin() as conn:
        if not conn.execute(claim).rowcount:
            return None
        requests = build_requests(conn, dags, [ti_id])
    return requests[0] if requests else None


class _PoolProcess:
    """What one Celery pool process keeps: its database engine and the DAGs it imported."""

    def __init__(self, settings: Settings, worker_name: str) -> None:
        from herald.store.db import make_engine

        os.environ["HERALD_WORKER"] = "1"
        self.settings = settings
        self.name = f"{worker_name}/celery:{os.getpid()}"
        self.engine = make_engine(settings.db_url, pool_size=2)
        self.bag: DagBag = load_folder(Path(settings.dags_path))
        self._checked = time.monotonic()

    def dags(self) -> dict[str, DAG]:
        """The DAGs, imported again when a file changed (looked at every reload interval)."""
        now = time.monotonic()
        if now - self._checked >= self.settings.dag_reload_interval:
            self._checked = now
            if changed(self.bag):
                self.bag = load_folder(self.bag.folder)
        return self.bag.dags

    def run(self, ti_id: int, try_number: int, body: dict[str, Any] | None) -> str:
        dags = self.dags()
        sent = TaskRequest(**body) if body else None
        request = claim_try(self.engine, dags, ti_id, try_number, self.name, sent)
        if request is None:
            log.info("try %s (number %s) is not queued any more: duplicate delivery dropped", ti_id, try_number)
            return "skipped"
        held = _Held(ti_id, try_number, time.monotonic())
        stop = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeat, args=(held, stop), daemon=True, name="heartbeat")
        heartbeat.start()
        try:
            message = run_task(dags, dataclasses.asdict(request))
        finally:
            stop.set()
        heartbeat.join(timeout=5)
        message.pop("ti_id", None)
        message["hostname"] = self.name
        if request.timeout and str(message.get("error") or "").startswith("SoftTimeLimitExceeded"):
            message["error"] = f"timed out after {request.timeout:g}s (timeout={request.timeout:g})"
        result = TaskResult(ti_id=ti_id, try_number=try_number, **message)
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
        ti = t.task_instance
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    update(ti)
                    .where(
                        ti.c.id == held.ti_id,
                        ti.c.state == "running",
                        ti.c.try_number == held.try_number,
                        ti.c.hostname == self.name,
                    )
                    .values(heartbeat_at=utcnow())
                ).rowcount
            )

    def _still_ours(self, held: _Held) -> bool:
        if held.lost:
            return False
        if time.monotonic() - held.confirmed < HEARTBEAT_TIMEOUT / 2:
            # Alive in the database this recently: no scheduler can have failed it yet.
            return True
        try:
            return self._beat(held)
        except Exception:
            return True  # the database is away: store_results retries, and decides nothing

    def _heartbeat(self, held: _Held, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_INTERVAL):
            try:
                if self._beat(held):
                    held.confirmed = time.monotonic()
                else:
                    held.lost = True
                    log.warning("try %s was failed as lost while running here", held.ti_id)
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


def build_worker_app(settings: Settings, worker_name: str) -> Any:
    """The Celery app of a worker: Herald's task, and pool processes that import the DAG files."""
    from celery.signals import worker_process_init  # type: ignore[import-untyped]

    app = make_app(settings.celery_broker_url)

    def init_pool_process(**_: Any) -> None:
        global _process
        _process = _PoolProcess(settings, worker_name)

    # weak=False: the closure would otherwise be collected before any pool process starts.
    worker_process_init.connect(init_pool_process, weak=False)

    @app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def run_try(ti_id: int, try_number: int, request: dict[str, Any] | None = None) -> str:
        global _process
        if _process is None:  # a solo or threads pool: no pool-process start signal
            _process = _PoolProcess(settings, worker_name)
        return _process.run(int(ti_id), int(try_number), request)

    return app


def run_worker(
    settings: Settings,
    queues: list[str] | None,
    concurrency: int,
    worker_name: str,
    say: Callable[[str], None] = print,
) -> None:
    """Run a Celery worker until SIGTERM (warm shutdown: running tries finish) or SIGINT."""
    app = build_worker_app(settings, worker_name)
    names = queues or [DEFAULT_QUEUE]
    level = os.environ.get("HERALD_LOG_LEVEL", "WARNING").upper()
    say(
        f"Herald Celery worker {worker_name} starting: {concurrency} process(es), queues: {', '.join(names)}, "
        f"broker: {_mask(settings.celery_broker_url or '')}."
    )
    app.worker_main(
        [
            "worker",
            "--queues",
            ",".join(celery_queue(n) for n in names),
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
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))
