"""Watcher health samples: every `interval` seconds, the triggerer records the state, lag,
received count and error of each watcher whose lease it holds (`store/watcher_samples.py`).

The lease holder alone samples a watcher (a shareable queue read by every triggerer is
sampled once), in one INSERT for all of them; samples older than `keep` are pruned
here about once an hour, so a deployment without HERALD_RETENTION keeps a bounded table.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from herald.store import watcher_samples
from herald.store.db import Database
from herald.store.types import utcnow

log = logging.getLogger("herald.triggerer")

#: seconds between two samples of the watchers (HERALD_WATCHER_SAMPLE_INTERVAL)
SAMPLE_INTERVAL = 15.0
#: how long samples are kept at most
KEEP = timedelta(days=1)
#: seconds between two prunes of old samples
PRUNE_INTERVAL = 3600.0


class WatcherSampler:
    """Samples the watchers `owner` holds every `interval` seconds until cancelled.

    Args:
        db: the metadata database.
        owner: the triggerer's lease owner name.
        interval: seconds between two samples.
        keep: samples older than this are deleted.
    """

    def __init__(self, db: Database, owner: str, interval: float = SAMPLE_INTERVAL, keep: timedelta = KEEP) -> None:
        self.db = db
        self.owner = owner
        self.interval = interval
        self.keep = keep
        #: samples written since the start (what tests and logs look at)
        self.taken = 0

    async def run(self) -> None:
        """Sample, wait `interval`, sample again; a database away is logged and tried next time."""
        loop = asyncio.get_running_loop()
        pruned_at = -PRUNE_INTERVAL
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.taken += await self.db.run(watcher_samples.take, self.db.engine, self.owner, utcnow())
                if loop.time() - pruned_at >= PRUNE_INTERVAL:
                    pruned_at = loop.time()
                    await self.db.run(watcher_samples.prune, self.db.engine, utcnow() - self.keep)
            except Exception as exc:  # a sample missed is a gap in a chart, nothing more
                log.warning("sampling the watchers failed: %s", exc)
