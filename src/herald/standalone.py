"""Herald's processes: `standalone` (all in one), or `scheduler`, `triggerer`, `worker` and `api` apart.

Each runs until SIGINT or SIGTERM and then stops cleanly: watchers close
(unacknowledged messages go back to their brokers), running tasks get a grace
period, and the database is left consistent for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

from herald import notify
from herald.config import Settings
from herald.dagcheck import CheckerClosed
from herald.dagsource import DagSource
from herald.executors.base import Executor
from herald.executors.dag_callbacks import DagCallbackRunner
from herald.executors.database import DatabaseExecutor
from herald.executors.local import LocalExecutor
from herald.loader import DagBag
from herald.scheduler.requests import build_requests
from herald.scheduler.retention import RetentionLoop
from herald.scheduler.scheduler import Scheduler
from herald.store.db import Database
from herald.store.files import private_home
from herald.store.migrate import upgrade
from herald.triggerer.inbox import InboxMover
from herald.triggerer.triggerer import Triggerer, env_fault

log = logging.getLogger("herald")


def process_name(kind: str) -> str:
    """A name unique to this process, for leases and task hostnames: `triggerer:host:pid`."""
    return f"{kind}:{socket.gethostname()}:{os.getpid()}"


class StoppedWhileLoading(Exception):
    """A stop was requested before the first load of the DAGs folder finished."""


class CannotStart(Exception):
    """The process cannot start (its API port is taken, ...): the message says what and how to fix it."""


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
        private_home(settings.home)  # 0700: the database, logs and conf are this user's alone
        db = Database(settings.db_url)
        await db.run(upgrade, db.engine)
        listener = notify.make_listener(settings.db_url)
        listener.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.serve(db, listener, self._stop)
        except StoppedWhileLoading:
            self.say("Herald stopped while loading the DAGs folder.")
        except CannotStart as exc:
            self.say(f"[bold red]error:[/] {exc}")
            raise SystemExit(1) from None
        finally:
            listener.stop()
            db.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    async def serve(self, db: Database, listener: notify.Listener, stop: asyncio.Event) -> None:
        """The process's own work."""
        raise NotImplementedError

    def running(self, message: str) -> None:
        """Say the process is up, and set aside what it has built so far from garbage collection.

        What exists now (imported modules, the DAGs, the API's routes: hundreds of
        thousands of objects) lives as long as the process: freezing it spares
        every full collection from walking it again, and the interpreter's final
        collection when the process exits (a second of CPU on a busy machine).
        """
        self.say(message)
        gc.freeze()

    @staticmethod
    async def load_dags(source: DagSource, stop: asyncio.Event) -> DagBag:
        """The first load of the DAGs folder, given up at once when a stop is requested meanwhile.

        A DAG file's check can take up to HERALD_DAG_FILE_PROCESSOR_TIMEOUT; SIGTERM
        must not wait for it: the checks are killed and `StoppedWhileLoading` raised.
        """
        loading = asyncio.ensure_future(source.load())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if loading.done():
            return loading.result()
        source.close()
        loading.cancel()
        with contextlib.suppress(asyncio.CancelledError, CheckerClosed):
            await loading
        raise StoppedWhileLoading

    async def serve_api(self, db: Database, port: int) -> tuple[Any, asyncio.Task[None] | None]:
        """Serve the API and UI on the running loop; returns the server and its task."""
        import uvicorn

        from herald.api.app import create_app
        from herald.api.server import ApiServer
        from herald.store.tokens import ensure_admin_token

        def first_start_token() -> str | None:
            with db.engine.begin() as conn:
                return ensure_admin_token(conn)

        # Made on the first start, shown once in the banner; only its hash is stored.
        self.admin_token = await db.run(first_start_token)
        app = create_app(
            db.engine,
            database_url=self.settings.db_url,
            max_payload_depth=self.settings.max_payload_depth,
            limits=self.settings.limits,
        )
        config = uvicorn.Config(app, host=self.settings.api_host, port=port, log_level="warning", lifespan="off")
        server = ApiServer(config)

        async def serve() -> None:
            # Server.serve() would take over SIGINT/SIGTERM; Herald owns them and stops
            # the API itself, so run the inner coroutine that does not touch signals.
            # uvicorn ends with sys.exit(1) when it cannot bind: inside a task that
            # SystemExit would escape the event loop and leave Herald's threads running.
            try:
                await server._serve()
            except SystemExit:
                return

        task = asyncio.create_task(serve(), name="api")
        for _ in range(1500):  # up to 30 s: a loaded machine starts it slowly; a taken port ends it at once
            if server.started or task.done():
                break
            await asyncio.sleep(0.02)
        if not server.started:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            host = self.settings.api_host
            raise CannotStart(
                f"the API cannot listen on {host}:{port} (is another Herald or program using it?); "
                f"choose another port with --port or HERALD_API_PORT"
            )
        return server, task

    @staticmethod
    async def stop_api(server: Any, task: asyncio.Task[None] | None) -> None:
        """Stop a server started by `serve_api`."""
        if server is not None and task is not None:
            server.exit()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)


def _callback_runner(settings: Settings, db: Database, scheduler: Scheduler, kind: str) -> DagCallbackRunner:
    """The runner of DAG callbacks beside a scheduler: woken by its passes that asked for some."""
    runner = DagCallbackRunner(
        db,
        lambda: scheduler.dags,
        str(settings.dags_path),
        process_name(kind),
        timeout=settings.dag_callback_timeout,
        log_limit=settings.max_log_bytes,
    )
    scheduler.on_callbacks = runner.wake
    return runner


def _alert_monitor(settings: Settings, db: Database) -> Any:
    """The alert pass beside a scheduler, when alerts have somewhere to go (else None)."""
    if not settings.alerts_enabled:
        return None
    from herald.alerts.conditions import Thresholds
    from herald.alerts.monitor import AlertMonitor
    from herald.alerts.send import AlertSender, SmtpTarget

    smtp = None
    if settings.alert_smtp_host and settings.alert_recipients:
        smtp = SmtpTarget(
            host=settings.alert_smtp_host,
            port=settings.alert_smtp_port,
            sender=settings.alert_smtp_from,
            recipients=tuple(settings.alert_recipients),
            user=settings.alert_smtp_user,
            password=settings.alert_smtp_password,
            starttls=settings.alert_smtp_starttls,
        )
    thresholds = Thresholds(
        watcher_after=settings.alert_watcher_after,
        watcher_lag=settings.alert_watcher_lag,
        latency_seconds=settings.alert_latency_seconds,
        latency_window=settings.alert_latency_window,
        dag_failures=settings.alert_dag_failures,
    )
    sender = AlertSender(settings.alert_webhook_url, smtp, settings.alert_send_timeout)
    return AlertMonitor(db, sender, thresholds, settings.alert_interval)


class _Alerts:
    """The alert monitor's task, started and stopped with its scheduler."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.monitor = _alert_monitor(settings, db)
        self.task: asyncio.Task[None] | None = None
        if self.monitor is not None:
            self.task = asyncio.create_task(self.monitor.run(), name="alerts")

    async def stop(self) -> None:
        if self.monitor is None or self.task is None:
            return
        self.monitor.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 5)
        await asyncio.get_running_loop().run_in_executor(None, self.monitor.sender.close)


async def _stop_runner(runner: DagCallbackRunner, task: asyncio.Task[None]) -> None:
    runner.stop()
    try:
        await asyncio.wait_for(task, 5)
    except Exception:  # a callback still running is killed with its process group by the cancel
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


def _retention(settings: Settings, db: Database) -> asyncio.Task[None] | None:
    """With HERALD_RETENTION: the scheduled clean, on the running loop."""
    if settings.retention is None:
        return None
    loop = RetentionLoop(db, settings.retention, settings.retention_interval, settings.retention_batch_size)
    return asyncio.create_task(loop.run(), name="retention")


def _publish_inbox(db: Database, listener: notify.Listener) -> InboxMover | None:
    """On SQLite, the inbox other processes commit local:// publishes to, moved here (`triggerer.inbox`)."""
    if not db.is_sqlite:
        return None  # on PostgreSQL publishers write the database themselves

    def wake(queues: set[str]) -> None:
        for queue in queues:
            listener.fire(notify.local_channel(queue))

    mover = InboxMover(db, wake, env_fault())
    mover.start()
    return mover


async def _stop_publish_inbox(mover: InboxMover | None) -> None:
    if mover is not None:
        await mover.stop()


def _requests(settings: Settings) -> Any:
    """The request builder with the settings' limits (the executors and workers call it)."""
    return functools.partial(build_requests, inlet_events_limit=settings.inlet_events_limit)


class Standalone(Service):
    """Every Herald process in one, on the embedded SQLite default or PostgreSQL."""

    def __init__(self, settings: Settings, port: int | None, say: Callable[[str], None] = print) -> None:
        super().__init__(settings, say)
        self.port = settings.api_port if port is None else port

    async def serve(self, db: Database, listener: notify.Listener, stop: asyncio.Event) -> None:
        settings = self.settings
        settings.dags_path.mkdir(parents=True, exist_ok=True)
        executor: Executor
        scheduler: Scheduler
        if settings.executor == "celery":
            # Tries go to Celery workers (`herald worker` with HERALD_EXECUTOR=celery),
            # which claim them in this PostgreSQL database; no local pool runs.
            from herald.executors.celery_executor import CeleryExecutor, make_app

            executor = CeleryExecutor(
                make_app(settings), db.engine, lambda: scheduler.dags, _requests(settings), settings
            )
        else:
            executor = LocalExecutor(
                str(settings.dags_path),
                settings.worker_count,
                process_groups=settings.try_process_groups,
                limits=settings.limits,
            )
        scheduler = Scheduler(
            db,
            executor,
            listener.event(notify.SCHEDULER),
            settings.max_waiting_tries,
            inlet_events_limit=settings.inlet_events_limit,
            max_map_length=settings.max_map_length,
            limits=settings.limits,
            max_lost_requeues=settings.max_lost_worker_requeues,
        )
        triggerer = Triggerer(
            db,
            listener,
            scheduler.wake,
            owner="standalone",
            max_backlog=settings.max_event_backlog,
            max_payload_depth=settings.max_payload_depth,
            apply_timeout=settings.apply_function_timeout,
            limits=settings.limits,
            sample_interval=settings.watcher_sample_interval,
            trigger_capacity=settings.triggerer_capacity,
            trigger_import_timeout=settings.dag_file_processor_timeout,
        )
        source = DagSource(settings, db, say=self.say)
        source.subscribe(lambda bag, cat: scheduler.update(bag.dags, cat.asset_ids, cat.consumers))
        source.subscribe(lambda bag, cat: triggerer.update(cat.watchers, cat.consumers, bag.dags))
        # Workers import only the files this process checked and imported (bag.files).
        source.subscribe(lambda bag, cat: executor.reload(bag.files))
        bag = await self.load_dags(source, stop)
        executor.start(scheduler.on_started, scheduler.on_result)
        scheduler_task = asyncio.create_task(scheduler.run(), name="scheduler")
        publishes = _publish_inbox(db, listener)
        callbacks = _callback_runner(settings, db, scheduler, "standalone")
        callbacks_task = asyncio.create_task(callbacks.run(), name="dag-callbacks")
        alerts = _Alerts(settings, db)
        cleaner = _retention(settings, db)
        watch = asyncio.create_task(source.watch(), name="dag-reload")
        server: Any = None
        server_task: asyncio.Task[None] | None = None
        try:
            # Up once the DAGs are loaded (a health check that answers means they are); a taken
            # port stops what started above and Herald exits saying so (CannotStart).
            server, server_task = await self.serve_api(db, self.port)
            s = settings
            runs_on = (
                "Celery workers (herald worker with HERALD_EXECUTOR=celery)"
                if s.executor == "celery"
                else f"{s.worker_count} local worker process(es)"
            )
            self.running(
                f"Herald is running.\n"
                f"  API:          http://{s.api_host}:{self.port}/api/v1/health\n"
                f"  Web UI:       http://{s.api_host}:{self.port}/  admin token: "
                f"{self.admin_token or '(shown on first start only; more: herald tokens create --scope write)'}\n"
                f"  DAGs folder:  {s.dags_path} ({len(bag.dags)} DAG(s), {len(bag.errors)} import error(s))\n"
                f"  Database:     {_mask(s.db_url)}\n"
                f"  Tasks run on: {runs_on}\n"
                f"  Look at:      herald runs list | herald watchers list | herald dags errors\n"
                f"  Stop with Ctrl-C."
            )
            await stop.wait()
        finally:
            self.say("Stopping Herald: closing watchers, letting running tasks finish...")
            watch.cancel()
            if cleaner is not None:
                cleaner.cancel()
            await _stop_publish_inbox(publishes)
            await triggerer.stop()
            await executor.stop(grace=10.0)
            scheduler.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(scheduler_task, 10)
            await _stop_runner(callbacks, callbacks_task)
            await alerts.stop()
            await self.stop_api(server, server_task)
            self.say("Herald stopped.")


class SchedulerProcess(Service):
    """`herald scheduler`: creates runs and queues tries for `herald worker` processes (or Celery)."""

    async def serve(self, db: Database, listener: notify.Listener, stop: asyncio.Event) -> None:
        s = self.settings
        executor: Executor
        scheduler: Scheduler
        if s.executor == "celery":
            # Tries stay queued in the database; each also goes to a Celery queue.
            from herald.executors.celery_executor import CeleryExecutor, make_app

            executor = CeleryExecutor(make_app(s), db.engine, lambda: scheduler.dags, _requests(s), s)
        else:
            executor = DatabaseExecutor(s.heartbeat_timeout, s.max_waiting_tries)
        scheduler = Scheduler(
            db,
            executor,
            listener.event(notify.SCHEDULER),
            s.max_waiting_tries,
            inlet_events_limit=s.inlet_events_limit,
            max_map_length=s.max_map_length,
            limits=s.limits,
            max_lost_requeues=s.max_lost_worker_requeues,
        )
        source = DagSource(s, db, say=self.say)
        source.subscribe(lambda bag, cat: scheduler.update(bag.dags, cat.asset_ids, cat.consumers))
        bag = await self.load_dags(source, stop)
        executor.start(scheduler.on_started, scheduler.on_result)
        task = asyncio.create_task(scheduler.run(), name="scheduler")
        callbacks = _callback_runner(s, db, scheduler, "scheduler")
        callbacks_task = asyncio.create_task(callbacks.run(), name="dag-callbacks")
        alerts = _Alerts(s, db)
        cleaner = _retention(s, db)
        watch = asyncio.create_task(source.watch(), name="dag-reload")
        to = "Celery" if s.executor == "celery" else "herald worker processes"
        self.running(f"Herald scheduler running ({len(bag.dags)} DAG(s), tasks go to {to}); Ctrl-C stops it.")
        try:
            await stop.wait()
        finally:
            watch.cancel()
            if cleaner is not None:
                cleaner.cancel()
            scheduler.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
            await _stop_runner(callbacks, callbacks_task)
            await alerts.stop()
            await executor.stop(grace=0)
            self.say("Herald scheduler stopped.")


class TriggererProcess(Service):
    """`herald triggerer`: consumes the watchers whose leases it holds."""

    async def serve(self, db: Database, listener: notify.Listener, stop: asyncio.Event) -> None:
        name = process_name("triggerer")
        # Events reach the schedulers by pg_notify in the ingest transaction.
        s = self.settings
        triggerer = Triggerer(
            db,
            listener,
            lambda: None,
            owner=name,
            max_backlog=s.max_event_backlog,
            max_payload_depth=s.max_payload_depth,
            apply_timeout=s.apply_function_timeout,
            limits=s.limits,
            sample_interval=s.watcher_sample_interval,
            trigger_capacity=s.triggerer_capacity,
            trigger_import_timeout=s.dag_file_processor_timeout,
        )
        source = DagSource(self.settings, db, say=self.say)
        source.subscribe(lambda bag, cat: triggerer.update(cat.watchers, cat.consumers, bag.dags))
        bag = await self.load_dags(source, stop)
        watch = asyncio.create_task(source.watch(), name="dag-reload")
        publishes = _publish_inbox(db, listener)
        self.running(
            f"Herald triggerer {name} running ({len(source.catalog.watchers)} watcher(s), {len(bag.dags)} DAG(s))."
        )
        try:
            await stop.wait()
        finally:
            watch.cancel()
            await _stop_publish_inbox(publishes)
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
        run_worker(
            self.settings, self.queues, self.concurrency, process_name("worker"), _requests(self.settings), say=self.say
        )

    async def serve(self, db: Database, listener: notify.Listener, stop: asyncio.Event) -> None:
        from herald.executors.worker_service import WorkerService

        name = process_name("worker")
        service = WorkerService(
            db,
            _requests(self.settings),
            listener,
            str(self.settings.dags_path),
            self.concurrency,
            self.queues,
            name,
            heartbeat_timeout=self.settings.heartbeat_timeout,
            prefetch=self.settings.worker_prefetch,
            process_groups=self.settings.try_process_groups,
            limits=self.settings.limits,
        )
        source = DagSource(self.settings, db, sync=False, say=self.say)
        source.subscribe(lambda bag, cat: service.update(bag.dags, bag.files))
        await self.load_dags(source, stop)
        task = asyncio.create_task(service.run(), name="worker")
        watch = asyncio.create_task(source.watch(), name="dag-reload")
        queues = ", ".join(self.queues) if self.queues else "default"
        self.running(f"Herald worker {name} running: {self.concurrency} process(es), queues: {queues}.")
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
        if self.admin_token:
            # made on this first start and stored hashed: this is the only time it can be read
            self.say(f"Web UI: http://{self.settings.api_host}:{self.port}/  admin token: {self.admin_token}")
        self.running(f"Herald API on http://{self.settings.api_host}:{self.port}/api/v1/health")
        try:
            await stop.wait()
        finally:
            await self.stop_api(server, task)


def _mask(url: str) -> str:
    from herald.sdk.masking import mask_url

    return mask_url(url)
