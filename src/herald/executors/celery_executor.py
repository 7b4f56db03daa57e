"""`HERALD_EXECUTOR=celery`: the scheduler sends each queued try to a Celery queue.

The division of labour with the database stays the one of `herald worker`:

- A scheduler leaves tries `queued` in the database (try number bumped) and,
  after the pass commits, `CeleryExecutor.submit` publishes them to the tries'
  queues (`@task(queue="gpu")`, else `default`), several tries per Celery
  message: `herald.run_tries([[ti_id, try_number, request], ...])`, at most
  `Settings.celery_batch_size` of them, the pass's tries of a queue spread evenly
  over the fewest messages (`batches`). `request` is what the task needs (its
  run, events, upstream results), or None when that is large and the worker
  reads it from the database. A try with a timeout travels alone, with Celery's
  time limits on its message. Per message, not per try: the publish, the
  worker's claim and its result write (most of a try's cost on a cluster).
- A Celery worker (`herald worker` with `HERALD_EXECUTOR=celery`, see
  `celery_worker`) claims the message's tries in the database before running
  them (`UPDATE ... WHERE state='queued' AND (id, try_number) IN ...`): a message
  delivered twice, or the message of a try that was since failed and retried,
  claims nothing of it and runs nothing of it. Results and logs go to
  `task_result` for a scheduler to apply, as for every remote worker.
- Messages are acknowledged late (after the task) and requeued when the worker
  process dies (`reject_on_worker_lost`); Redis gives an unacknowledged message
  back after a visibility timeout. Redelivery therefore only ever carries tries
  that nobody claimed; a claimed try whose worker died stops sending heartbeats,
  and past the heartbeat timeout a scheduler puts it back to the queue (a lost
  worker, which uses none of the task's retries) and publishes it again.
- A try can stay `queued` without a message: the scheduler died between its
  commit and the publish, or the broker refused the message. Each scheduler
  looks at the queued tries every few seconds and publishes again the ones that
  have been queued for `Settings.celery_resend_after` seconds while their Celery
  queue is empty (so a backlog the workers are working through is not doubled),
  backing off exponentially per try. A duplicate is harmless: it claims nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from herald.config import Settings
from herald.executors.base import RequestBuilder
from herald.executors.database import DatabaseExecutor
from herald.executors.records import TaskRequest, TaskResult, TaskStarted
from herald.sdk.dag import DAG
from herald.store import tries as store_tries

log = logging.getLogger("herald.celery")

#: the Celery task a message of Herald's tries runs as
BATCH_TASK_NAME = "herald.run_tries"
#: one try per message (what schedulers before batching sent; workers still run it)
TASK_NAME = "herald.run_try"
DEFAULT_QUEUE = "default"
#: a try's request (run, events, upstream results) up to this size (JSON) travels in its message
MAX_INLINE_REQUEST = 64 * 1024
#: how often (seconds) a scheduler looks for queued tries that lost their message
SWEEP_INTERVAL = 5.0


def _inline(request: TaskRequest) -> dict[str, Any] | None:
    """What travels in the message for this try: its request, or None when the worker reads it."""
    # What the try needs (its run, events, upstream results) does not change once it is
    # queued: sent along, it spares the worker the queries.
    body = request.to_wire()
    if len(json.dumps(body, default=str)) > MAX_INLINE_REQUEST:
        return None  # large events: the worker reads them from the database
    return body


def celery_queue(prefix: str, queue: str | None) -> str:
    """The Celery queue of Herald's task queue `queue` (`@task(queue=...)`, else `default`)."""
    return prefix + (queue or DEFAULT_QUEUE)


def make_app(settings: Settings) -> Any:
    """The Celery application Herald's schedulers and workers share (JSON, late acks)."""
    if not settings.celery_broker_url:
        raise ValueError(
            "HERALD_EXECUTOR=celery needs HERALD_CELERY_BROKER_URL, for example "
            "redis://127.0.0.1:6379/1 or amqp://guest:guest@127.0.0.1:5672//"
        )
    try:
        from celery import Celery  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("the Celery executor needs Celery: pip install 'herald[celery]'") from exc
    app = Celery("herald", broker=settings.celery_broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        # A message is acknowledged after its task, and given back when the worker
        # process running it dies: a killed worker loses nothing.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        task_default_queue=celery_queue(settings.celery_queue_prefix, None),
        worker_prefetch_multiplier=settings.celery_prefetch_multiplier,
        broker_transport_options={"visibility_timeout": settings.celery_visibility_timeout},
        broker_connection_retry_on_startup=True,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        enable_utc=True,
    )
    return app


def batches(requests: list[TaskRequest], size: int) -> list[list[TaskRequest]]:
    """The Celery messages of these tries: per queue, at most `size` tries each, as even as can be.

    A pass of 10 tries with `size` 8 makes two messages of 5 (not 8 and 2): two pool
    processes get the same work. A try with a timeout goes alone, since Celery's time
    limits are per message. The order of the tries is kept within each queue.
    """
    by_queue: dict[str, list[TaskRequest]] = {}
    found: list[list[TaskRequest]] = []
    for r in requests:
        if r.timeout:
            found.append([r])
        else:
            by_queue.setdefault(r.queue or DEFAULT_QUEUE, []).append(r)
    for group in by_queue.values():
        count = -(-len(group) // size)
        step, extra = divmod(len(group), count)
        start = 0
        for i in range(count):
            end = start + step + (1 if i < extra else 0)
            found.append(group[start:end])
            start = end
    return found


def send(app: Any, prefix: str, messages: list[list[TaskRequest]]) -> int:
    """Publish each list of tries as one Celery message to their queue; returns the tries sent."""
    sent = 0
    if not messages:
        return sent
    with app.producer_or_acquire() as producer:
        for batch in messages:
            first = batch[0]
            options: dict[str, Any] = {}
            if first.timeout:
                # The task fails with SoftTimeLimitExceeded in its log; a task that
                # ignores it is killed a little later (and failed by its heartbeat).
                options = {"soft_time_limit": first.timeout, "time_limit": first.timeout + 10}
            app.send_task(
                BATCH_TASK_NAME,
                args=[[[r.ti_id, r.try_number, _inline(r)] for r in batch]],
                queue=celery_queue(prefix, first.queue),
                producer=producer,
                **options,
            )
            sent += len(batch)
    return sent


@dataclass
class _Seen:
    try_number: int
    since: float  # when this scheduler published it, or first saw it queued
    resends: int = 0


class CeleryExecutor(DatabaseExecutor):
    """Publishes each queued try to its Celery queue; results come back through the database.

    Args:
        app: the Celery app (`make_app`).
        engine: the metadata database, read by the resend sweep.
        dags: the scheduler's DAGs of the latest load.
        build: the request builder, for tries whose message must be sent again.
        settings: Herald's settings (heartbeat timeout, back-pressure, Celery's).
    """

    wake_channel: str | None = None
    #: a request travels in its Celery message
    needs_requests = True

    def __init__(
        self,
        app: Any,
        engine: Engine,
        dags: Callable[[], dict[str, DAG]],
        build: RequestBuilder,
        settings: Settings,
    ) -> None:
        super().__init__(settings.heartbeat_timeout, settings.max_waiting_tries)
        self.app = app
        self.engine = engine
        self.dags = dags
        self.build = build
        self.prefix = settings.celery_queue_prefix
        self.resend_after = settings.celery_resend_after
        self.batch_size = settings.celery_batch_size
        # One thread: publishing is blocking I/O, and keeps the tries' order.
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="herald-celery")
        self._seen: dict[int, _Seen] = {}
        self._stopping = False
        self._sweeper: asyncio.Task[None] | None = None
        self.sent = 0

    def start(self, on_started: Callable[[TaskStarted], None], on_result: Callable[[TaskResult], None]) -> None:
        """Start the resend sweep on the running loop."""
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop(), name="celery-resend")

    def submit(self, requests: list[TaskRequest]) -> None:
        """Publish these tries (on the executor's thread)."""
        if requests and not self._stopping:
            self._pool.submit(self._guard, self._send, list(requests))

    async def stop(self, grace: float) -> None:
        """Stop publishing; messages already handed to the thread are still sent."""
        self._stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(BaseException):
                await self._sweeper
        await asyncio.to_thread(self._pool.shutdown, wait=True)

    async def _sweep_loop(self) -> None:
        """Publish again, every few seconds, tries that stayed queued without reaching a worker."""
        loop = asyncio.get_running_loop()
        while not self._stopping:
            with contextlib.suppress(Exception):
                await loop.run_in_executor(self._pool, self._guard, self._sweep)
            await asyncio.sleep(min(SWEEP_INTERVAL, max(0.5, self.resend_after / 2)))

    # -- on the executor's thread -------------------------------------------------------------

    @staticmethod
    def _guard(fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # the sweep publishes them later
            log.warning("could not send tries to Celery (they will be sent again): %s", exc)

    def _send(self, requests: list[TaskRequest]) -> None:
        now = time.monotonic()
        for r in requests:
            self._seen[r.ti_id] = _Seen(r.try_number, now)
        self._publish(requests)

    def _publish(self, requests: list[TaskRequest]) -> None:
        if requests:
            self.sent += send(self.app, self.prefix, batches(requests, self.batch_size))

    def _sweep(self) -> None:
        with self.engine.connect() as conn:
            rows = store_tries.queued_rows(conn)
        now = time.monotonic()
        queued = {int(r.id) for r in rows}
        for gone in [i for i in self._seen if i not in queued]:
            del self._seen[gone]
        due = []
        for r in rows:
            seen = self._seen.get(int(r.id))
            if seen is None or seen.try_number != r.try_number:
                self._seen[int(r.id)] = _Seen(int(r.try_number), now)
            elif now - seen.since >= self.resend_after * 2 ** min(seen.resends, 5):
                due.append(r)
        if not due:
            return
        sizes = self._queue_sizes({celery_queue(self.prefix, r.queue) for r in due})
        # A queue with messages waiting: the workers are behind, the try's message is
        # probably among them. Look again when the queue has drained.
        due = [r for r in due if not sizes.get(celery_queue(self.prefix, r.queue))]
        for r in due:
            seen = self._seen[int(r.id)]
            seen.since, seen.resends = now, seen.resends + 1
        if due:
            log.warning("sending %d try(s) to Celery again: queued for %gs or more", len(due), self.resend_after)
            with self.engine.connect() as conn:
                requests = self.build(conn, self.dags(), [int(r.id) for r in due])
            self._publish([r for r in requests if r.try_number == self._seen[r.ti_id].try_number])

    def _queue_sizes(self, names: set[str]) -> dict[str, int | None]:
        """Messages waiting in each Celery queue (0 if it does not exist, None if unknown)."""
        sizes: dict[str, int | None] = {}
        with self.app.connection_for_write() as connection:
            for name in names:
                channel = None
                try:
                    channel = connection.channel()
                    ok = channel.queue_declare(queue=name, passive=True)
                    sizes[name] = int(ok.message_count)
                except Exception as exc:
                    missing = "NOT_FOUND" in str(exc) or type(exc).__name__ == "NotFound"
                    sizes[name] = 0 if missing else None
                finally:
                    if channel is not None:
                        with contextlib.suppress(Exception):
                            channel.close()
        return sizes
