"""`herald standalone`: triggerer, scheduler, executor and API in one process tree."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import Any

from herald import notify
from herald.config import Settings
from herald.executors.local import LocalExecutor
from herald.loader import DagBag, changed, load_folder
from herald.scheduler.scheduler import Scheduler
from herald.store.db import Database
from herald.store.migrate import upgrade
from herald.store.sync import sync_bag
from herald.triggerer.triggerer import Triggerer

log = logging.getLogger("herald")


class Standalone:
    """Every Herald process in one, on the embedded SQLite default or PostgreSQL."""

    def __init__(self, settings: Settings, port: int | None, say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.port = settings.api_port if port is None else port
        self.say = say
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        """Stop cleanly (Ctrl-C, SIGTERM)."""
        self._stop.set()

    async def run(self) -> None:
        """Run until `request_stop`."""
        settings = self.settings
        settings.home.mkdir(parents=True, exist_ok=True)
        settings.dags_path.mkdir(parents=True, exist_ok=True)
        db = Database(settings.db_url)
        await db.run(upgrade, db.engine)
        listener = notify.make_listener(settings.db_url)
        listener.start()
        wake = listener.event(notify.SCHEDULER)
        executor = LocalExecutor(str(settings.dags_path), settings.worker_count)
        scheduler = Scheduler(db, executor, wake)
        triggerer = Triggerer(db, listener, scheduler.wake)
        executor.start(scheduler.on_started, scheduler.on_result)

        bag = await asyncio.to_thread(load_folder, settings.dags_path)
        await self._apply(db, bag, scheduler, triggerer)
        scheduler_task = asyncio.create_task(scheduler.run(), name="scheduler")
        server, server_task = await self._serve_api(db)
        self._banner(bag)
        reload_task = asyncio.create_task(self._watch(db, bag, scheduler, triggerer, executor))

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            await self._stop.wait()
        finally:
            self.say("Stopping Herald: closing watchers, letting running tasks finish...")
            reload_task.cancel()
            await triggerer.stop()
            await executor.stop(grace=10.0)
            scheduler.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(scheduler_task, 10)
            if server is not None:
                server.should_exit = True
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server_task, 5)
            listener.stop()
            db.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            self.say("Herald stopped.")

    async def _apply(self, db: Database, bag: DagBag, scheduler: Scheduler, triggerer: Triggerer) -> None:
        catalog = await db.run(sync_bag, db.engine, bag)
        scheduler.update(bag.dags, catalog.asset_ids, catalog.consumers)
        triggerer.update(catalog.watchers, catalog.consumers)
        for path, error in bag.errors.items():
            last = error.strip().splitlines()[-1] if error.strip() else "error"
            log.error("DAG file %s failed to import: %s (see: herald dags errors)", path, last)

    async def _watch(
        self, db: Database, bag: DagBag, scheduler: Scheduler, triggerer: Triggerer, executor: LocalExecutor
    ) -> None:
        while True:
            await asyncio.sleep(self.settings.dag_reload_interval)
            try:
                if not await asyncio.to_thread(changed, bag):
                    continue
                bag = await asyncio.to_thread(load_folder, self.settings.dags_path)
                await self._apply(db, bag, scheduler, triggerer)
                executor.reload()
                self.say(f"DAG files changed: {len(bag.dags)} DAG(s), {len(bag.errors)} import error(s)")
            except Exception:
                log.exception("reloading the DAGs folder failed")

    async def _serve_api(self, db: Database) -> tuple[Any, asyncio.Task[None]]:
        import uvicorn

        from herald.api.app import create_app
        from herald.api.tokens import ensure_admin_token

        def first_start_token() -> str | None:
            with db.engine.begin() as conn:
                return ensure_admin_token(conn)

        # Made on the first start, shown once in the banner; only its hash is stored.
        self.admin_token = await db.run(first_start_token)
        app = create_app(db.engine, database_url=self.settings.db_url)
        config = uvicorn.Config(app, host=self.settings.api_host, port=self.port, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        # Server.serve() would take over SIGINT/SIGTERM; Herald owns them and stops
        # the API itself, so run the inner coroutine that does not touch signals.
        task = asyncio.create_task(server._serve(), name="api")
        for _ in range(100):
            if server.started or task.done():
                break
            await asyncio.sleep(0.02)
        if task.done() and not server.started:
            self.say(f"warning: the API could not listen on {self.settings.api_host}:{self.port}")
            return None, task
        return server, task

    def _banner(self, bag: DagBag) -> None:
        s = self.settings
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


def _mask(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
