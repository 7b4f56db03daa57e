"""The DAGs folder as the running processes see it: loaded, written to the database, reloaded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy import Engine, text

from herald.config import Settings
from herald.loader import DagBag, changed, load_folder
from herald.store.db import Database
from herald.store.sync import Catalog, sync_bag

log = logging.getLogger("herald.dags")

#: an arbitrary constant: the PostgreSQL advisory lock that serialises DAG syncs
SYNC_LOCK = 7_236_401


def sync_locked(engine: Engine, bag: DagBag) -> Catalog:
    """`sync_bag`, one process at a time (several schedulers and triggerers sync the same folder)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": SYNC_LOCK})
            conn.commit()
            try:
                return sync_bag(engine, bag)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SYNC_LOCK})
                conn.commit()
    return sync_bag(engine, bag)


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

    def subscribe(self, callback: Callable[[DagBag, Catalog], None]) -> None:
        """Call `callback(bag, catalog)` after every load (and now, if loaded)."""
        self._subscribers.append(callback)

    async def load(self) -> DagBag:
        """Import the folder, record it, and notify the subscribers."""
        bag = await asyncio.to_thread(load_folder, self.settings.dags_path)
        if self.sync:
            self.catalog = await self.db.run(sync_locked, self.db.engine, bag)
        self.bag = bag
        for path, error in bag.errors.items():
            last = error.strip().splitlines()[-1] if error.strip() else "error"
            log.error("DAG file %s failed to import: %s (see: herald dags errors)", path, last)
        for callback in self._subscribers:
            callback(bag, self.catalog)
        return bag

    async def watch(self) -> None:
        """Reload whenever a DAG file is added, changed or removed."""
        while True:
            await asyncio.sleep(self.settings.dag_reload_interval)
            try:
                if not await asyncio.to_thread(changed, self.bag):
                    continue
                bag = await self.load()
                self.say(f"DAG files changed: {len(bag.dags)} DAG(s), {len(bag.errors)} import error(s)")
            except Exception:
                log.exception("reloading the DAGs folder failed")
