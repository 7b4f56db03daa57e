"""HERALD_RETENTION: the scheduler (and standalone) cleans the database on a schedule.

Every `interval` seconds, what is finished and older than `keep` is deleted
(`herald.store.retention`), one batch per call on the database thread pool:
on SQLite, where the scheduler has that one thread, its passes run between two
batches, so a clean of a million rows never holds a pass up for more than one
batch. Several schedulers may clean at once: the rows are taken with SKIP LOCKED.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from herald.store import retention as store_retention
from herald.store.db import Database
from herald.store.types import utcnow

log = logging.getLogger("herald.retention")


class RetentionLoop:
    """Deletes what is older than `keep` every `interval` seconds, the first time at start.

    Runs until its task is cancelled (a batch under way finishes on its thread).

    Args:
        db: the metadata database (its thread pool runs each batch).
        keep: how long finished runs, consumed events and replayed dead letters are kept.
        interval: seconds between two cleans.
        batch_size: rows per transaction.
    """

    def __init__(self, db: Database, keep: timedelta, interval: float, batch_size: int) -> None:
        self.db = db
        self.keep = keep
        self.interval = interval
        self.batch_size = batch_size

    async def run(self) -> None:
        """Clean, wait `interval`, clean again."""
        while True:
            try:
                await self.clean_once()
            except Exception as exc:  # the next clean tries again; nothing here is urgent
                log.warning("cleaning the database (HERALD_RETENTION) failed: %s", exc)
            await asyncio.sleep(self.interval)

    async def clean_once(self) -> store_retention.Cleaned:
        """One clean, batch by batch; returns what it deleted."""
        cleaner = store_retention.Cleaner(utcnow() - self.keep, self.batch_size)
        while await self.db.run(cleaner.step, self.db.engine):
            await asyncio.sleep(store_retention.BATCH_PAUSE)
        done = cleaner.done.as_dict()
        if any(done.values()):
            log.info("retention: deleted %s", ", ".join(f"{n} {kind}" for kind, n in done.items()))
        return cleaner.done
