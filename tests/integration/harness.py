"""Runs Herald's triggerer in the test's own event loop against a real broker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from herald import notify
from herald.config import normalise_database_url
from herald.loader import DagBag
from herald.sdk.assets import Asset
from herald.sdk.dag import DAG, Task
from herald.sdk.watcher import AssetWatcher
from herald.store import tables as t
from herald.store.db import Database
from herald.store.migrate import upgrade
from herald.store.sync import Catalog, sync_bag
from herald.triggerer.triggerer import Triggerer
from herald.triggers.base import BaseEventTrigger


class _Collect(logging.Handler):
    """Keeps the triggerer's warnings about failing watchers: a watcher that lost its
    connection shows `last_error` only until it consumes again, the log keeps it."""

    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "retrying in" in message:
            self.into.append(message)


class TriggererHarness:
    """A triggerer with one DAG per watched asset, on a real metadata database.

    No scheduler runs: tests look at what the delivery contract stored
    (events, queue entries, dead letters, watcher counters).
    """

    def __init__(self, database_url: str) -> None:
        self.url = normalise_database_url(database_url)
        self.db = Database(self.url)
        upgrade(self.db.engine)
        self.listener = notify.make_listener(self.url)
        self.triggerer: Triggerer | None = None
        self.catalog: Catalog | None = None
        self.wakeups = 0
        #: what the triggerer logged of its watchers' failures ("...; retrying in ..."), in order
        self.errors: list[str] = []
        self._log_handler = _Collect(self.errors)
        logging.getLogger("herald.triggerer").addHandler(self._log_handler)

    async def start(
        self, *watched: tuple[str, BaseEventTrigger], fault: Callable[[str], None] | None = None
    ) -> Triggerer:
        """Watch each `(asset name, trigger)` with a watcher named `w`, and start consuming."""
        self.listener.start()
        bag = DagBag(folder=__import__("pathlib").Path("."))
        for name, trigger in watched:
            asset = Asset(name, watchers=[AssetWatcher("w", trigger)])
            dag = DAG(f"on_{name}", schedule=[asset])
            dag.add_task(Task("noop", lambda: None))
            bag.dags[dag.dag_id] = dag
        self.catalog = await self.db.run(sync_bag, self.db.engine, bag)
        self.triggerer = Triggerer(self.db, self.listener, self._woken)
        if fault is not None:
            self.triggerer.fault = fault
        self.triggerer.update(self.catalog.watchers, self.catalog.consumers)
        triggerer = self.triggerer
        await self.wait_for(lambda: triggerer.holds_all(), what="the watchers' leases")
        return self.triggerer

    def _woken(self) -> None:
        self.wakeups += 1

    async def stop(self) -> None:
        """Stop consuming (unacknowledged messages go back to the broker)."""
        if self.triggerer is not None:
            await self.triggerer.stop()
            self.triggerer = None
        self.listener.stop()

    async def restart(self, *watched: tuple[str, BaseEventTrigger]) -> Triggerer:
        """A new triggerer on the same database, as after a crash and restart."""
        await self.stop()
        self.listener = notify.make_listener(self.url)
        return await self.start(*watched)

    def close(self) -> None:
        """Release the database."""
        self.db.close()

    # -- what was stored ---------------------------------------------------------------

    def events(self, asset: str | None = None) -> list[dict[str, Any]]:
        """Stored events (oldest first) with their extra."""
        q = select(t.asset_event.c.id, t.asset_event.c.extra, t.asset.c.name).join(
            t.asset, t.asset.c.id == t.asset_event.c.asset_id
        )
        if asset:
            q = q.where(t.asset.c.name == asset)
        with self.db.engine.connect() as conn:
            return [{"id": r.id, "asset": r.name, **r.extra} for r in conn.execute(q.order_by(t.asset_event.c.id))]

    def queued(self) -> int:
        """Event-queue entries waiting for runs."""
        with self.db.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.event_queue)).scalar_one())

    def dead_letters(self) -> list[dict[str, Any]]:
        """Stored dead letters (oldest first)."""
        with self.db.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(t.dead_letter).order_by(t.dead_letter.c.id))]

    def watchers(self) -> list[dict[str, Any]]:
        """Watcher rows (state and counters)."""
        with self.db.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(t.watcher).order_by(t.watcher.c.id))]

    async def wait_for(self, check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
        """Poll `check` until true; fail with `what` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await asyncio.to_thread(check):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    async def wait_events(self, count: int, timeout: float = 20.0, asset: str | None = None) -> list[dict[str, Any]]:
        """Wait until at least `count` events are stored; return them."""
        await self.wait_for(lambda: len(self.events(asset)) >= count, timeout, f"{count} event(s)")
        return self.events(asset)

    def received(self) -> int:
        """Messages the watchers have processed (events, skips, duplicates and dead letters), committed."""
        return sum(int(w["received"]) for w in self.watchers())

    async def wait_received(self, count: int, timeout: float = 20.0) -> None:
        """Wait until the watchers have processed at least `count` messages (every delivery committed).

        The counters are written in the delivery's own transaction, so once they reach
        the number of messages published, every one of them has been stored or refused:
        what is asserted next does not depend on timing.
        """
        await self.wait_for(lambda: self.received() >= count, timeout, f"{count} message(s) processed")
