"""The DAGs folder as the running processes see it: loaded, written to the database, reloaded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from herald.config import Settings
from herald.dagcheck import CheckerClosed, FileChecker
from herald.loader import DagBag, changed, load_folder
from herald.sdk.masking import environment_secrets, mask_text
from herald.store.db import Database
from herald.store.sync import Catalog, sync_locked

log = logging.getLogger("herald.dags")


class DagSource:
    """Loads the DAGs folder, records it, and tells subscribers about each new version."""

    def __init__(self, settings: Settings, db: Database, *, sync: bool = True, say: Callable[[str], None] = print):
        self.settings = settings
        self.db = db
        self.sync = sync
        self.say = say
        self.bag = DagBag(folder=settings.dags_path)
        self.catalog = Catalog()
        self._subscribers: list[Callable[[DagBag, Catalog], None]] = []
        # Every file is imported in a child process first: one that exits, hangs or
        # crashes there becomes an import error instead of stopping this process.
        self.checker = FileChecker(settings.dag_file_processor_timeout, settings.dag_parsing_processes)

    def subscribe(self, callback: Callable[[DagBag, Catalog], None]) -> None:
        """Call `callback(bag, catalog)` after every load (and now, if loaded)."""
        self._subscribers.append(callback)

    async def load(self) -> DagBag:
        """Import the folder, record it, and notify the subscribers."""
        bag = await asyncio.to_thread(load_folder, self.settings.dags_path, checker=self.checker)
        if self.sync:
            self.catalog = await self.db.run(sync_locked, self.db.engine, bag)
        self.bag = bag
        for path, error in bag.errors.items():
            # masked here too: a worker (sync=False) logs errors the sync has not masked
            last = mask_text(error.strip().splitlines()[-1], environment_secrets()) if error.strip() else "error"
            log.error("DAG file %s failed to import: %s (see: herald dags errors)", path, last)
        for dag in bag.dags.values():
            for warning in dag.warnings:
                log.warning("DAG %s (%s): %s", dag.dag_id, dag.fileloc, warning)
        for callback in self._subscribers:
            callback(bag, self.catalog)
        return bag

    async def watch(self) -> None:
        """Reload whenever a DAG file is added, changed or removed."""
        try:
            while True:
                await asyncio.sleep(self.settings.dag_reload_interval)
                try:
                    if not await asyncio.to_thread(changed, self.bag):
                        continue
                    bag = await self.load()
                    self.say(f"DAG files changed: {len(bag.dags)} DAG(s), {len(bag.errors)} import error(s)")
                except CheckerClosed:
                    return
                except Exception:
                    log.exception("reloading the DAGs folder failed")
        finally:
            # Cancelled (Herald stops): end the checks a load in progress waits on.
            self.close()

    def close(self) -> None:
        """Kill the DAG file checks in progress; a load waiting on them raises `CheckerClosed`."""
        self.checker.close()
