"""`HERALD_EXECUTOR=celery`: the scheduler sends each queued try to a Celery queue.

The division of labour with the database stays the one of `herald worker`:

- A scheduler leaves tries `queued` in the database (try number bumped) and,
  after the pass commits, `CelerySender.on_queued` publishes one Celery message
  per try, `herald.run_try(ti_id, try_number, request)`, to the try's queue
  (`@task(queue="gpu")`, else `default`); `request` is what the task needs (its
  run, events, upstream results), or None when that is large and the worker
  reads it from the database.
- A Celery worker (`herald worker` with `HERALD_EXECUTOR=celery`, see
  `celery_worker`) claims the try in the database before running it
  (`UPDATE ... WHERE state='queued' AND try_number=N`): a message delivered twice,
  or a message of a try that was since failed and retried, claims nothing and is
  acknowledged without running anything. Results and logs go to `task_result`
  for a scheduler to apply, as for every remote worker.
- Messages are acknowledged late (after the task) and requeued when the worker
  process dies (`reject_on_worker_lost`); Redis gives an unacknowledged message
  back after a visibility timeout. Redelivery therefore only ever carries tries
  that nobody claimed; a claimed try whose worker died stops sending heartbeats
  and the scheduler's heartbeat timeout fails it (and retries it if it may).
- A try can stay `queued` without a message: the scheduler died between its
  commit and the publish, or the broker refused the message. Each scheduler
  looks at the queued tries every few seconds and publishes again the ones that
  have been queued for `HERALD_CELERY_RESEND_AFTER` seconds while their Celery
  queue is empty (so a backlog the workers are working through is not doubled),
  backing off exponentially per try. A duplicate is harmless: it claims nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from herald.executors.base import TaskRequest
from herald.scheduler.scheduler import build_requests
from herald.sdk.dag import DAG
from herald.store import tables as t

log = logging.getLogger("herald.celery")

#: the Celery task every Herald try runs as
TASK_NAME = "herald.run_try"
DEFAULT_QUEUE = "default"
#: messages a worker process reserves ahead; more is faster, fewer is fairer
PREFETCH_MULTIPLIER = 4
#: a try still queued this long (seconds) with an empty Celery queue is published again
RESEND_AFTER = float(os.environ.get("HERALD_CELERY_RESEND_AFTER", "60"))
#: Redis: an unacknowledged message (its worker died) comes back after this many seconds
VISIBILITY_TIMEOUT = float(os.environ.get("HERALD_CELERY_VISIBILITY_TIMEOUT", "300"))
#: a try's request (run, events, upstream results) up to this size (JSON) travels in its message
MAX_INLINE_REQUEST = 64 * 1024
#: how often (seconds) a scheduler looks for queued tries that lost their message
SWEEP_INTERVAL = 5.0
#: put before every Celery queue name: Herald installations that share one broker stay apart
QUEUE_PREFIX = os.environ.get("HERALD_CELERY_QUEUE_PREFIX", "")


def celery_queue(queue: str | None) -> str:
    """The Celery queue of Herald's task queue `queue` (`@task(queue=...)`, else `default`)."""
    return QUEUE_PREFIX + (queue or DEFAULT_QUEUE)


def make_app(broker_url: str | None) -> Any:
    """The Celery application Herald's schedulers and workers share (JSON, late acks)."""
    if not broker_url:
        raise ValueError(
            "HERALD_EXECUTOR=celery needs HERALD_CELERY_BROKER_URL, for example "
            "redis://127.0.0.1:6379/1 or amqp://guest:guest@127.0.0.1:5672//"
        )
    try:
        from celery import Celery  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("the Celery executor needs Celery: pip install 'herald[celery]'") from exc
    app = Celery("herald", broker=broker_url, set_as_current=False)
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
        task_default_queue=celery_queue(None),
        worker_prefetch_multiplier=PREFETCH_MULTIPLIER,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        broker_connection_retry_on_startup=True,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        enable_utc=True,
    )
    return app


@dataclass
class _Seen:
    try_number: int
    since: float  # when this scheduler published it, or first saw it queued
    resends: int = 0


class CelerySender:
    """Publishes queued tries to Celery from a scheduler process (the `on_queued` hook)."""

    def __init__(
        self,
        app: Any,
        engine: Engine,
        dags: Callable[[], dict[str, DAG]],
        resend_after: float = RESEND_AFTER,
    ) -> None:
        self.app = app
        self.engine = engine
        self.dags = dags
        self.resend_after = resend_after
        # One thread: publishing is blocking I/O, and keeps the tries' order.
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="herald-celery")
        self._seen: dict[int, _Seen] = {}
        self._stopping = False
        self.sent = 0

    @classmethod
    def from_settings(cls, broker_url: str | None, engine: Engine, dags: Callable[[], dict[str, DAG]]) -> CelerySender:
        """A sender for `HERALD_CELERY_BROKER_URL`."""
        return cls(make_app(broker_url), engine, dags)

    def on_queued(self, ti_ids: list[int]) -> None:
        """The scheduler's hook: publish these tries (on the sender's thread)."""
        if ti_ids and not self._stopping:
            self._pool.submit(self._guard, self._send_ids, list(ti_ids))

    async def run(self) -> None:
        """Publish again, every few seconds, tries that stayed queued without reaching a worker."""
        loop = asyncio.get_running_loop()
        while not self._stopping:
            with contextlib.suppress(Exception):
                await loop.run_in_executor(self._pool, self._guard, self._sweep)
            await asyncio.sleep(min(SWEEP_INTERVAL, max(0.5, self.resend_after / 2)))

    def stop(self) -> None:
        """Stop publishing; messages already handed to the thread are still sent."""
        self._stopping = True
        self._pool.shutdown(wait=True)

    # -- on the sender's thread ---------------------------------------------------------------

    @staticmethod
    def _guard(fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # the sweep publishes them later
            log.warning("could not send tries to Celery (they will be sent again): %s", exc)

    def _send_ids(self, ti_ids: list[int]) -> None:
        ti = t.task_instance
        dags = self.dags()
        with self.engine.connect() as conn:
            queued = [
                int(i)
                for i in conn.execute(
                    select(ti.c.id).where(ti.c.id.in_(ti_ids), ti.c.state == "queued").order_by(ti.c.id)
                ).scalars()
            ]
            requests = build_requests(conn, dags, queued)
        now = time.monotonic()
        for r in requests:
            self._seen[r.ti_id] = _Seen(r.try_number, now)
        self._publish(requests, dags)

    def _publish(self, requests: list[TaskRequest], dags: dict[str, DAG]) -> None:
        if not requests:
            return
        with self.app.producer_or_acquire() as producer:
            for r in requests:
                options: dict[str, Any] = {}
                dag = dags.get(r.dag_id)
                task = dag.tasks.get(r.task_id) if dag is not None else None
                if task is not None and task.timeout:
                    # The task fails with SoftTimeLimitExceeded in its log; a task that
                    # ignores it is killed a little later (and failed by its heartbeat).
                    options = {"soft_time_limit": task.timeout, "time_limit": task.timeout + 10}
                # What the try needs (its run, events, upstream results) does not change
                # once it is queued: sent along, it spares the worker the queries.
                body: dict[str, Any] | None = dataclasses.asdict(r)
                if len(json.dumps(body, default=str)) > MAX_INLINE_REQUEST:
                    body = None  # large events: the worker reads them from the database
                self.app.send_task(
                    TASK_NAME,
                    args=[r.ti_id, r.try_number, body],
                    queue=celery_queue(r.queue),
                    producer=producer,
                    **options,
                )
                self.sent += 1

    def _sweep(self) -> None:
        ti = t.task_instance
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ti.c.id, ti.c.dag_id, ti.c.task_id, ti.c.try_number, ti.c.queue)
                .where(ti.c.state == "queued")
                .order_by(ti.c.id)
            ).all()
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
        sizes = self._queue_sizes({celery_queue(r.queue) for r in due})
        # A queue with messages waiting: the workers are behind, the try's message is
        # probably among them. Look again when the queue has drained.
        due = [r for r in due if not sizes.get(celery_queue(r.queue))]
        for r in due:
            seen = self._seen[int(r.id)]
            seen.since, seen.resends = now, seen.resends + 1
        if due:
            log.warning("sending %d try(s) to Celery again: queued for %gs or more", len(due), self.resend_after)
            dags = self.dags()
            with self.engine.connect() as conn:
                requests = build_requests(conn, dags, [int(r.id) for r in due])
            self._publish([r for r in requests if r.try_number == self._seen[r.ti_id].try_number], dags)

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
