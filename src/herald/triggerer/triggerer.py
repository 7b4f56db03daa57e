"""The triggerer: one consumer per (queue, options), the delivery contract, watcher health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, func, or_, select, update

from herald import notify
from herald.store import local_queue
from herald.store import tables as t
from herald.store.db import Database
from herald.store.sync import WatcherSpec
from herald.store.types import utcnow
from herald.triggerer.backoff import Backoff
from herald.triggerer.ingest import Outcome, ingest
from herald.triggerer.replay import REPLAY, replay_requested
from herald.triggers.base import BaseEventTrigger, Message

log = logging.getLogger("herald.triggerer")

#: messages taken from a broker per receive (each broker may cap it lower, SQS at 10)
BATCH_SIZE = 500
LAG_INTERVAL = 5.0
#: events waiting for runs beyond which the triggerer stops taking messages (back-pressure)
MAX_BACKLOG = 20_000
BACKLOG_CHECK_INTERVAL = 0.25
#: dead letters asked for replay are also looked for this often (a lost wake-up)
REPLAY_INTERVAL = 2.0
#: a watcher's lease lasts this long unless renewed; a dead triggerer's watchers
#: move to a live one within about this time
LEASE_TTL = 10.0
LEASE_RENEW = 3.0


@dataclass
class Consumer:
    """One connection to one queue, shared by every watcher whose trigger has its key."""

    key: str
    trigger: BaseEventTrigger
    watchers: list[WatcherSpec] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class _Runtime:
    """The services a local:// trigger borrows from the triggerer."""

    def __init__(self, db: Database, listener: notify.Listener) -> None:
        self._db = db
        self._listener = listener

    async def local_fetch(self, queue: str, after_id: int, limit: int) -> list[Any]:
        return await self._db.run(local_queue.fetch, self._db.engine, queue, after_id, limit)

    def local_event(self, queue: str) -> asyncio.Event:
        return self._listener.event(notify.local_channel(queue))

    def local_remove(self, connection: Any, ids: list[int]) -> None:
        local_queue.remove(connection, ids)


class Triggerer:
    """Runs the consumers of every active watcher and turns messages into events.

    Args:
        db: the metadata database.
        listener: wake-ups from publishers of local:// messages.
        on_events: called after each commit that created events (wakes the scheduler).
    """

    def __init__(
        self,
        db: Database,
        listener: notify.Listener,
        on_events: Callable[[], None],
        owner: str = "standalone",
        max_backlog: int = MAX_BACKLOG,
    ) -> None:
        self.db = db
        self.runtime = _Runtime(db, listener)
        self.on_events = on_events
        # Watchers are consumed by the triggerer holding their lease; a standalone
        # Herald always uses the same owner name, so it takes its own leases back at
        # once after a crash, while a second triggerer waits for them to expire.
        self.owner = owner
        self.consumers: dict[str, Consumer] = {}
        self.consumers_of_asset: dict[int, list[str]] = {}
        self._wanted: dict[str, list[WatcherSpec]] = {}
        self._lag_task: asyncio.Task[None] | None = None
        self._lease_task: asyncio.Task[None] | None = None
        self._lease_wake = asyncio.Event()
        self._replay_wake = listener.event(REPLAY)
        self.max_backlog = max_backlog
        self._backlog = 0
        self._backlog_checked = -1e9
        #: called at "before_commit" and "after_commit"; raising there aborts the
        #: delivery as a crash would (fault-injection tests use it)
        self.fault: Callable[[str], None] = env_fault()

    def update(self, watchers: list[WatcherSpec], consumers_of_asset: dict[int, list[str]]) -> None:
        """Match the watchers of the latest DAG load: consumers start once their lease is held."""
        self.consumers_of_asset = consumers_of_asset
        grouped: dict[str, list[WatcherSpec]] = {}
        for spec in watchers:
            grouped.setdefault(spec.consumer_key, []).append(spec)
        self._wanted = grouped
        for key in list(self.consumers):
            if key not in grouped:
                self._stop_consumer(key)
            else:
                self.consumers[key].watchers = grouped[key]
        if self._lag_task is None:
            self._lag_task = asyncio.create_task(self._housekeeping())
        if self._lease_task is None:
            self._lease_task = asyncio.create_task(self._hold_leases(), name="leases")
        self._lease_wake.set()

    def holds_all(self) -> bool:
        """True when this triggerer consumes every watcher it was given."""
        return set(self.consumers) >= set(self._wanted)

    def _start_consumer(self, key: str, specs: list[WatcherSpec]) -> None:
        consumer = Consumer(key=key, trigger=specs[0].watcher.trigger, watchers=specs)
        consumer.task = asyncio.create_task(self._consume(consumer), name=f"consumer {key[:80]}")
        self.consumers[key] = consumer

    def _stop_consumer(self, key: str) -> None:
        consumer = self.consumers.pop(key)
        if consumer.task is not None:
            consumer.task.cancel()

    async def _hold_leases(self) -> None:
        """Claim and renew the leases of the wanted watchers; start or stop consumers to match."""
        while True:
            self._lease_wake.clear()
            wanted = {key: [s.id for s in specs] for key, specs in self._wanted.items()}
            try:
                owned = await self.db.run(claim_leases, self.db.engine, self.owner, wanted, LEASE_TTL)
            except Exception as exc:
                log.warning("could not renew watcher leases: %s", exc)
                owned = set(self.consumers)  # keep going; the database is probably restarting
            for key in list(self.consumers):
                if key not in owned:
                    log.warning("lost the lease of %s; another triggerer consumes it now", key[:80])
                    self._stop_consumer(key)
            for key in owned:
                if key not in self.consumers and key in self._wanted:
                    self._start_consumer(key, self._wanted[key])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lease_wake.wait(), LEASE_RENEW)

    async def stop(self) -> None:
        """Cancel every consumer and wait for them to close their connections."""
        tasks = [c.task for c in self.consumers.values() if c.task is not None]
        for extra in (self._lag_task, self._lease_task):
            if extra is not None:
                tasks.append(extra)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        ids = [w.id for c in self.consumers.values() for w in c.watchers]
        self.consumers.clear()
        if ids:
            with contextlib.suppress(Exception):
                await self.db.run(_set_state, self.db.engine, ids, "stopped", None)
            with contextlib.suppress(Exception):
                await self.db.run(release_leases, self.db.engine, self.owner, ids)

    async def _consume(self, consumer: Consumer) -> None:
        backoff = Backoff()
        trigger = consumer.trigger
        while True:
            ids = [w.id for w in consumer.watchers]
            try:
                trigger.bind(self.runtime)
                await trigger.open()
                await self.db.run(_set_state, self.db.engine, ids, "running", None)
                backoff.reset()
                while True:
                    room = await self._wait_for_room()
                    messages = await trigger.receive(min(BATCH_SIZE, room))
                    if _cancel_swallowed():
                        # Some clients (redis-py during a blocking XREADGROUP) swallow a
                        # cancellation and return normally; the consumer must stop anyway.
                        # What was received is unacknowledged: the broker delivers it again.
                        raise asyncio.CancelledError
                    self._backlog += len(messages)  # until the next count
                    if messages:
                        await self._deliver(consumer, messages)
            except asyncio.CancelledError:
                await _close_quietly(trigger)
                raise
            except Exception as exc:
                delay = backoff.next()
                state = "failed" if isinstance(exc, ImportError) else "reconnecting"
                error = f"{type(exc).__name__}: {exc}"
                log.warning("watcher(s) %s: %s; retrying in %.1fs", ids, error, delay)
                log.debug("%s", traceback.format_exc())
                await _close_quietly(trigger)
                with contextlib.suppress(Exception):
                    await self.db.run(_set_state, self.db.engine, ids, state, error)
                await asyncio.sleep(delay)

    def _outcomes(self, consumer: Consumer, messages: list[Message]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for message in messages:
            for spec in consumer.watchers:
                try:
                    keep, payload, encoding = spec.watcher.trigger.to_payload(message)
                except Exception as exc:
                    outcomes.append(
                        Outcome(spec.id, spec.asset_id, message, "dead", error=f"{type(exc).__name__}: {exc}")
                    )
                    continue
                kind = "event" if keep else "skip"
                outcomes.append(Outcome(spec.id, spec.asset_id, message, kind, payload, encoding))
        return outcomes

    async def _deliver(self, consumer: Consumer, messages: list[Message]) -> None:
        """The delivery contract: transform, store in one transaction, commit, then ack."""
        outcomes = self._outcomes(consumer, messages)
        sources = {s.id: str(s.watcher.trigger.describe().get("url", "")) for s in consumer.watchers}
        trigger = consumer.trigger
        consumers_of_asset = self.consumers_of_asset

        def store() -> int:
            with self.db.engine.begin() as conn:
                result = ingest(conn, outcomes, consumers_of_asset, sources)
                if trigger.transactional_ack:
                    trigger.ack_in_transaction(conn, messages)
                if result.events:
                    notify.notify_in(conn, notify.SCHEDULER)  # schedulers in other processes
                self.fault("before_commit")
            return result.events

        created = await self.db.run(store)
        self.fault("after_commit")
        if not trigger.transactional_ack:
            await trigger.ack(messages)
        if created:
            self.on_events()

    async def _replay(self) -> None:
        """Replay requested dead letters of the watchers this triggerer consumes."""
        specs = {w.id: w for c in self.consumers.values() for w in c.watchers}
        if not specs:
            return
        created = await self.db.run(replay_requested, self.db.engine, specs, self.consumers_of_asset)
        if created:
            self.on_events()

    async def _wait_for_room(self) -> int:
        """Back-pressure: while the scheduler has a large backlog of events, take no more.

        Messages then wait in their broker (where they are safe and cheap) instead of
        piling up in the database faster than runs are made of them.
        """
        loop = asyncio.get_running_loop()
        while True:
            if loop.time() - self._backlog_checked > BACKLOG_CHECK_INTERVAL:
                self._backlog_checked = loop.time()
                try:
                    self._backlog = await self.db.run(_backlog, self.db.engine, self.max_backlog)
                except Exception:
                    self._backlog = 0  # the delivery itself will report a database problem
            if self._backlog < self.max_backlog:
                return self.max_backlog - self._backlog
            await asyncio.sleep(BACKLOG_CHECK_INTERVAL)

    async def _housekeeping(self) -> None:
        last_lag = 0.0
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._replay_wake.wait(), REPLAY_INTERVAL)
            self._replay_wake.clear()
            try:
                await self._replay()
            except Exception as exc:
                log.warning("replaying dead letters failed: %s", exc)
            if loop.time() - last_lag < LAG_INTERVAL:
                continue
            last_lag = loop.time()
            for consumer in list(self.consumers.values()):
                try:
                    lag = await consumer.trigger.lag()
                except Exception:
                    continue
                if lag is not None:
                    ids = [w.id for w in consumer.watchers]
                    with contextlib.suppress(Exception):
                        await self.db.run(_set_lag, self.db.engine, ids, lag)


def _cancel_swallowed() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _close_quietly(trigger: BaseEventTrigger) -> None:
    """Close a trigger to the end even if the consumer is being cancelled (no leaked sockets)."""
    task = asyncio.ensure_future(trigger.close())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise
    except Exception as exc:
        log.debug("closing %r failed: %s", trigger, exc)


def env_fault() -> Callable[[str], None]:
    """A crash at a named point, from `HERALD_FAULT=POINT[:N]` (the Nth time; default 1).

    The process exits at once with status 137, as kill -9 would leave it: no
    cleanup, no acknowledgement, no rollback beyond what the database does.
    """
    spec = os.environ.get("HERALD_FAULT", "")
    if not spec:
        return lambda point: None
    point, _, nth = spec.partition(":")
    remaining = [int(nth or "1")]

    def crash(where: str) -> None:
        if where == point:
            remaining[0] -= 1
            if remaining[0] <= 0:
                os._exit(137)

    return crash


def claim_leases(engine: Engine, owner: str, wanted: dict[str, list[int]], ttl: float) -> set[str]:
    """Take or renew the leases of each consumer group's watchers; returns the groups held.

    A group is held only when all its watchers are (they share one connection).
    """
    now = utcnow()
    w = t.watcher
    owned: set[str] = set()
    with engine.begin() as conn:
        for key, ids in wanted.items():
            taken = conn.execute(
                update(w)
                .where(
                    w.c.id.in_(ids),
                    or_(w.c.lease_owner.is_(None), w.c.lease_owner == owner, w.c.lease_expires_at < now),
                )
                .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=ttl))
            ).rowcount
            if taken == len(ids):
                owned.add(key)
            elif taken:
                conn.execute(update(w).where(w.c.id.in_(ids), w.c.lease_owner == owner).values(lease_owner=None))
    return owned


def release_leases(engine: Engine, owner: str, ids: list[int]) -> None:
    """Give leases up at a clean stop, so another triggerer takes the watchers at once."""
    w = t.watcher
    with engine.begin() as conn:
        conn.execute(update(w).where(w.c.id.in_(ids), w.c.lease_owner == owner).values(lease_owner=None))


def _set_state(engine: Engine, ids: list[int], state: str, error: str | None) -> None:
    values: dict[str, Any] = {"state": state, "updated_at": utcnow()}
    if error is not None:
        values["last_error"] = error
    with engine.begin() as conn:
        conn.execute(update(t.watcher).where(t.watcher.c.id.in_(ids)).values(**values))


def _backlog(engine: Engine, cap: int) -> int:
    """Events queued for runs, counted up to `cap` (cheap however large the backlog)."""
    with engine.connect() as conn:
        sub = select(t.event_queue.c.id).limit(cap).subquery()
        return int(conn.execute(select(func.count()).select_from(sub)).scalar_one())


def _set_lag(engine: Engine, ids: list[int], lag: int) -> None:
    with engine.begin() as conn:
        conn.execute(update(t.watcher).where(t.watcher.c.id.in_(ids)).values(lag=lag))
