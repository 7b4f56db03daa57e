"""Herald's processes: `standalone` (all in one), or `scheduler`, `triggerer`, `worker` and `api` apart.

Each runs until SIGINT or SIGTERM and then stops cleanly: watchers close
(unacknowledged messages go back to their brokers), running tasks get a grace
period, and the database is left consistent for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

from herald import notify
from herald.config import Settings
from herald.dagsource import DagSource
from herald.executors.local import LocalExecutor
from herald.scheduler.scheduler import Scheduler
from herald.store.db import Database
from herald.store.migrate import upgrade
from herald.triggerer.triggerer import Triggerer

log = logging.getLogger("herald")


def process_name(kind: str) -> str:
    """A name unique to this process, for leases and task hostnames: `triggerer:host:pid`."""
    return f"{kind}:{socket.gethostname()}:{os.getpid()}"


class Service:
    """What every Herald process shares: settings, database, wake-ups, signals."""

    def __init__(self, settings: Settings, say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.say = say
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        """Stop cleanly (Ctrl-C, SIGTERM)."""
        self._stop.set()

    async def run(self) -> None:
        """Open the database, run `serve` until a stop is requested, then close."""
        settings = self.settings
        settings.home.mkdir(parents=True, exist_ok=True)
        db = Database(settings.db_url)
        await db.run(upgrade, db.engine)
        listener = notify.make_listener(settings.db_url)
        listener.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.serve(db, listener, self._stop)
        finally:
            listener.stop()
            db.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    async def serve(self, db: Database, listener: notify.Listener, stop: asyncio.Event) -> None:
        """The process's own work."""
        raise NotImplementedError

    async def serve_api(self, db: Database, port: int) -> tuple[Any, asyncio.Task[None] | None]:
        """Serve the API and UI on the running loop; returns the server and its task."""
        import uvicorn

        from herald.api.app import create_app
        from herald.api.tokens import ensure_admin_token

        def first_start_token() -> str | None:
            with db.engine.begin() as conn:
                return ensure_admin_token(conn)

        # Made on the first start, shown once in the banner; only its hash is stored.
        self.admin_token = await db.run(first_start_token)
        app = create_app(db.engine, database_url=self.settings.db_url)
        config = uvicorn.Config(app, host=self.settings.api_host, port=port, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        # Server.serve() would take over SIGINT/SIGTERM; Herald owns them and stops
        # the API itself, so run the inner coroutine that does not touch signals.
        task = asyncio.create_task(server._serve(), name="api")
        for _ in range(250):
            if server.started or task.done():
                break
            await asyncio.sleep(0.02)
        if task.done() and not server.started:
            self.say(f"warning: the API could not listen on {self.settings.api_host}:{port}")
            return None, None
        return server, task

    @staticmethod
    async def stop_api(server: Any, task: asyncio.Task[None] | None) -> None:
        """Stop a server started by `serve_api`."""
        if server is not None and task is not None:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)


class Standalone(Service):
    """Every Herald process in one, on the embedded SQLite default or PostgreSQL."""

    def __init__(self, settings: Settings, port: int | None, say: Callable[[str], None] = print) -> None:
        super().__init__(settings, say)
        self.port = settings.api_port if port is None else port

    async def serve(self, db: Database, listener: notify.Listener, stop: asyncio.Event) -> None:
        settings = self.settings
        settings.dags_path.mkdir(parents=True, exist_ok=True)
        executor = LocalExecutor(str(settings.dags_path), settings.worker_count)
        scheduler = Scheduler(db, executor, listener.event(notify.SCHEDULER), settings.max_waiting_tries)
        triggerer = Triggerer(db, listener, scheduler.wake, owner="standalone", max_backlog=settings.max_event_backlog)
        executor.start(scheduler.on_started, scheduler.on_result)
        source = DagSource(settings, db, say=self.say)
        source.subscribe(lambda bag, cat: scheduler.update(bag.dags, cat.asset_ids, cat.consumers))
        source.subscribe(lambda bag, cat: triggerer.update(cat.watchers, cat.consumers))
        bag = await source.load()
        source.subscribe(lambda bag, cat: executor.reload())
        scheduler_task = asyncio.create_task(scheduler.run(), name="scheduler")
        server, server_task = await self.serve_api(db, self.port)
        watch = asyncio.create_task(source.watch(), name="dag-reload")
        s = settings
        self.say(
            f"Herald is running.\n"
            f"  API:          http://{s.api_host}:{self.port}/api/v1/health\n"
            f"  Web UI:       http://{s.api_host}:{self.port}/  admin token: "
            f"{self.admin_token or '(shown on first start only; more: herald tokens create --scope write)'}\n"
            f"  DAGs folder:  {s.dags_path} ({len(bag.dags)} DAG(s), {len(bag.errors)} import error(s))\n"
            f"  Database:     {_mask(s.db_url)}\n"
            f"  Look at:      herald runs list | herald watchers list | herald dags errors\n"
            f"  Stop with Ctrl-C."
        )
        try:
            await stop.wait()
        finally:
            self.say("Stopping Herald: closing watchers, letting running tasks finish...")
            watch.cancel()
            await triggerer.stop()
            await executor.stop(grace=10.0)
            scheduler.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(scheduler_task, 10)
            await self.stop_api(server, server_task)
            self.say("Herald stopped.")


class SchedulerProcess(Service):
    """`herald scheduler`: creates runs and queues tries for `herald worker` processes."""

    async def serve(self, db: Database, listener: notify.Listener, stop: asyncio.Event) -> None:
        scheduler = Scheduler(db, None, listener.event(notify.SCHEDULER), self.settings.max_waiting_tries)
        sender = None
        if self.settings.executor == "celery":
            # Tries stay queued in the database; each also goes to a Celery queue.
            from herald.executors.celery_executor import CelerySender

            sender = CelerySender.from_settings(self.settings.celery_broker_url, db.engine, lambda: scheduler.dags)
            scheduler.on_queued = sender.on_queued
        source = DagSource(self.settings, db, say=self.say)
        source.subscribe(lambda bag, cat: scheduler.update(bag.dags, cat.asset_ids, cat.consumers))
        bag = await source.load()
        task = asyncio.create_task(scheduler.run(), name="scheduler")
        watch = asyncio.create_task(source.watch(), name="dag-reload")
        resend = asyncio.create_task(sender.run(), name="celery-resend") if sender is not None else None
        to = "Celery" if sender is not None else "herald worker processes"
        self.say(f"Herald scheduler running ({len(bag.dags)} DAG(s), tasks go to {to}); Ctrl-C stops it.")
        try:
            await stop.wait()
        finally:
            watch.cancel()
            if resend is not None:
                resend.cancel()
            scheduler.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
            if sender is not None:
                await asyncio.to_thread(sender.stop)
            self.say("Herald scheduler stopped.")


class TriggererProcess(Service):
    """`herald triggerer`: consumes the watchers whose leases it holds."""

    async def serve(self, db: Database, listener: notify.Listener, stop: asyncio.Event) -> None:
        name = process_name("triggerer")
        # Events reach the schedulers by pg_notify in the ingest transaction.
        triggerer = Triggerer(db, listener, lambda: None, owner=name, max_backlog=self.settings.max_event_backlog)
        source = DagSource(self.settings, db, say=self.say)
        source.subscribe(lambda bag, cat: triggerer.update(cat.watchers, cat.consumers))
        bag = await source.load()
        watch = asyncio.create_task(source.watch(), name="dag-reload")
        self.say(
            f"Herald triggerer {name} running ({len(source.catalog.watchers)} watcher(s), {len(bag.dags)} DAG(s))."
        )
        try:
            await stop.wait()
        finally:
            watch.cancel()
            await triggerer.stop()
            self.say("Herald triggerer stopped.")


class WorkerProcess(Service):
    """`herald worker`: runs tries claimed from the database on a local pool, or is a Celery worker."""

    def __init__(
        self, settings: Settings, queues: list[str] | None, concurrency: int | None, say: Callable[[str], None] = print
    ) -> None:
        super().__init__(settings, say)
        self.queues = queues
        self.concurrency = concurrency or settings.worker_count

    def run_celery(self) -> None:
        """With `HERALD_EXECUTOR=celery`: a Celery worker of the task queues (blocks until stopped)."""
        from herald.executors.celery_worker import run_worker
        from herald.store.db import make_engine
        from herald.store.migrate import upgrade

        engine = make_engine(self.settings.db_url, pool_size=0)
        try:
            upgrade(engine)
        finally:
            engine.dispose()  # before the pool processes fork: each opens its own
        run_worker(self.settings, self.queues, self.concurrency, process_name("worker"), say=self.say)

    async def serve(self, db: Database, listener: notify.Listener, stop: asyncio.Event) -> None:
        from herald.executors.worker_service import WorkerService

        name = process_name("worker")
        service = WorkerService(db, listener, str(self.settings.dags_path), self.concurrency, self.queues, name)
        source = DagSource(self.settings, db, sync=False, say=self.say)
        source.subscribe(lambda bag, cat: service.update(bag.dags))
        await source.load()
        task = asyncio.create_task(service.run(), name="worker")
        watch = asyncio.create_task(source.watch(), name="dag-reload")
        queues = ", ".join(self.queues) if self.queues else "default"
        self.say(f"Herald worker {name} running: {self.concurrency} process(es), queues: {queues}.")
        try:
            await stop.wait()
        finally:
            watch.cancel()
            service.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 40)
            self.say("Herald worker stopped.")


class ApiProcess(Service):
    """`herald api`: the REST API and the UI."""

    def __init__(self, settings: Settings, port: int | None, say: Callable[[str], None] = print) -> None:
        super().__init__(settings, say)
        self.port = settings.api_port if port is None else port

    async def serve(self, db: Database, listener: notify.Listener, stop: asyncio.Event) -> None:
        server, task = await self.serve_api(db, self.port)
        if server is None:
            raise SystemExit(1)
        self.say(f"Herald API on http://{self.settings.api_host}:{self.port}/api/v1/health")
        try:
            await stop.wait()
        finally:
            await self.stop_api(server, task)


def _mask(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
