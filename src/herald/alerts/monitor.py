"""The periodic alert pass: conditions -> episodes -> messages, beside each scheduler.

Every `interval` seconds one transaction reads the conditions and moves the
episodes (`store.alerts`): a new condition opens a pending episode, one that
held `after` seconds fires, one that cleared resolves. Each move is guarded, so
with several schedulers exactly one sends each message. Messages are sent
after the commit on the sender's own threads: a slow or dead receiver never
holds the pass, nor any scheduler pass (this loop is a task of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from herald.alerts.conditions import Condition, Thresholds, current
from herald.alerts.send import AlertSender, Notice
from herald.store import alerts as store_alerts
from herald.store.db import Database
from herald.store.states import AlertState
from herald.store.types import utcnow

log = logging.getLogger("herald.alerts")


def _notice(key: str, state: str, summary: str, detail: Any, since: datetime, at: datetime, episode: int) -> Notice:
    detail = dict(detail) if isinstance(detail, dict) else {}
    return Notice(
        key=key,
        kind=str(detail.pop("kind", "")),
        state=state,
        summary=summary,
        detail=detail,
        since=since.isoformat(),
        at=at.isoformat(),
        episode=episode,
    )


def evaluate(db: Database, thresholds: Thresholds, now: datetime | None = None) -> list[Notice]:
    """One pass in one transaction; returns the messages this process must send."""
    now = now or utcnow()
    notices: list[Notice] = []
    with db.engine.begin() as conn:
        holding: dict[str, Condition] = {c.key: c for c in current(conn, thresholds, now)}
        episodes = store_alerts.open_episodes(conn)
        for key, c in holding.items():
            detail = {**c.detail, "kind": c.kind}
            row = episodes.get(key)
            if row is None:
                opened = store_alerts.start(conn, key, c.summary, detail, now)
                if opened is None or c.after > 0:
                    continue  # another scheduler opened it; or it must hold a while first
                (alert_id, episode), since = opened, now
            elif row.state == AlertState.PENDING and (now - row.since).total_seconds() >= c.after:
                alert_id, episode, since = int(row.id), int(row.episode), row.since
            else:
                continue  # firing already, or not held long enough
            if store_alerts.fire(conn, alert_id, c.summary, detail, now):
                notices.append(_notice(key, "firing", c.summary, detail, since, now, episode))
        for key, row in episodes.items():
            if key in holding:
                continue
            if row.state == AlertState.PENDING:
                store_alerts.drop(conn, int(row.id))
            elif store_alerts.resolve(conn, int(row.id), now):
                summary = f"resolved: {row.summary}"
                notices.append(_notice(key, "resolved", summary, row.detail, row.since, now, int(row.episode)))
    return notices


class AlertMonitor:
    """Runs `evaluate` every `interval` seconds and hands the messages to the sender.

    Args:
        db: the metadata database.
        sender: delivers the messages (webhook, e-mail).
        thresholds: when each condition holds.
        interval: seconds between two passes.
    """

    def __init__(self, db: Database, sender: AlertSender, thresholds: Thresholds, interval: float = 15.0) -> None:
        self.db = db
        self.sender = sender
        self.thresholds = thresholds
        self.interval = interval
        self._stop = asyncio.Event()
        #: called with each message handed to the sender (tests, logs)
        self.on_notice: Callable[[Notice], None] | None = None

    def stop(self) -> None:
        """End the loop after the current pass."""
        self._stop.set()

    async def run(self) -> None:
        """Passes until `stop`; a failing pass is logged and the next one tried."""
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            try:
                notices = await self.db.run(evaluate, self.db, self.thresholds)
            except Exception:
                log.exception("alert pass failed; trying again in %s s", self.interval)
                notices = []
            for notice in notices:
                log.warning("alert %s: %s", notice.state, notice.summary)
                if self.on_notice is not None:
                    self.on_notice(notice)
                # not awaited: sending happens on the sender's threads, with its time limits
                loop.run_in_executor(self.sender.pool, self.sender.send, notice)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)
