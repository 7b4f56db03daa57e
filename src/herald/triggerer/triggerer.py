"""The triggerer: one consumer per (queue, options), the delivery contract, watcher health,
and its share of the triggers deferred tries wait on (`task_triggers`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from herald import notify
from herald.sdk.dag import DAG
from herald.sdk.masking import mask_text, mask_url
from herald.sdk.triggers import BaseEventTrigger, Message
from herald.store import checkpoints, events, triggerers, watchers
from herald.store.db import Database, refused_row
from herald.store.events import Outcome
from herald.store.states import WatcherState
from herald.store.storable import DEFAULT_MAX_DEPTH, SizeLimits
from herald.store.sync import WatcherSpec
from herald.store.triggerers import LEASE_TTL, Identity
from herald.store.types import utcnow
from herald.triggerer.admission import DEFAULT_APPLY_TIMEOUT, Admission, store_apart
from herald.triggerer.backoff import Backoff
from herald.triggerer.local_queue import LocalQueuePoller, LocalQueueSource
from herald.triggerer.replay import replay_requested
from herald.triggerer.samples import SAMPLE_INTERVAL, WatcherSampler
from herald.triggerer.sharing import plan
from herald.triggerer.task_triggers import DEFAULT_CAPACITY, DEFAULT_IMPORT_TIMEOUT, TaskTriggers
from herald.triggers.local import LocalQueueTrigger

log = logging.getLogger("herald.triggerer")

#: messages taken from a broker per receive (each broker may cap it lower, SQS at 10): a batch is
#: what is ready, up to this, so one message waits for no other; a backlog goes in large batches,
#: each one transaction (ingest alone on SQLite: ~12% less CPU per event than batches of 500)
BATCH_SIZE = 2000
#: bytes of message bodies a batch should hold at most: after a batch of large messages the next
#: asks for fewer (2,000 messages of the 1 MiB a payload may have would be 2 GiB in memory)
BATCH_BYTES = 64 * 1024 * 1024
LAG_INTERVAL = 5.0
#: an idle consumer's lag (nothing delivered since it read 0, waiting for messages) is
#: taken as still 0 for this long before it is read again
IDLE_LAG_INTERVAL = 60.0
#: events waiting for runs beyond which the triggerer stops taking messages (back-pressure)
MAX_BACKLOG = 20_000
BACKLOG_CHECK_INTERVAL = 0.25
#: the backlog is counted again after this long even when this triggerer delivered nothing
#: (others may have filled it); sooner only after a delivery
BACKLOG_IDLE_CHECK_INTERVAL = 10.0
#: dead letters asked for replay are also looked for this long after the last wake-up
#: (a lost one), less often while none comes (`notify.Recheck`)
REPLAY_INTERVAL = 2.0
#: local:// batches locked at once on PostgreSQL: each holds a pooled connection until
#: its events commit, and the pool (5 + 5 overflow) serves everything else too
LOCAL_CLAIMS = 3
# How long a stop waits for a batch being stored to commit and be acknowledged.
DRAIN_TIMEOUT = 10.0
#: how long a stop waits for its consumers and loops to end (a batch in flight has DRAIN_TIMEOUT)
STOP_TIMEOUT = DRAIN_TIMEOUT + 5.0
#: each triggerer renews its heartbeat and its leases this often (LEASE_TTL, in
#: store.triggerers, is how long they last): a joining, leaving or dead triggerer
#: changes the shares within one LEASE_TTL
LEASE_RENEW = 3.0

__all__ = ["LEASE_RENEW", "LEASE_TTL", "Consumer", "Source", "Triggerer"]


def batch_size_after(messages: Sequence[Message]) -> int:
    """How many messages the next receive asks for: BATCH_SIZE, or fewer when these were large."""
    average = sum(len(m.body) for m in messages) / len(messages)
    return max(1, min(BATCH_SIZE, int(BATCH_BYTES // max(average, 1))))


class Source(Protocol):
    """What the consumer loop reads: a broker's trigger, or the embedded local:// queue."""

    async def open(self) -> None: ...
    async def receive(self, max_messages: int) -> list[Message]: ...
    async def ack(self, messages: list[Message]) -> None: ...
    async def close(self) -> None: ...
    async def lag(self) -> int | None: ...


@dataclass
class Consumer:
    """One connection to one queue, shared by every watcher whose trigger has its key."""

    key: str
    trigger: BaseEventTrigger
    #: what the loop reads: the trigger itself, or the embedded queue for local://
    source: Source
    watchers: list[WatcherSpec] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    #: judges its messages off the event loop (apply_function has a time limit)
    admission: Admission = field(default_factory=lambda: Admission("consumer"))
    #: messages delivered through it
    delivered: int = 0
    #: True while its loop waits in `source.receive` (a message that comes is taken at once)
    receiving: bool = False
    #: its last lag reading: `delivered` then, the lag, and when (loop time)
    lag_read: tuple[int, int, float] | None = None

    def idle_at_zero(self, now: float) -> bool:
        """True when its lag is surely still 0: read as 0 lately, nothing delivered since, waiting for messages.

        Waiting in `receive` it takes what comes at once (a consumer held back by
        the backlog, or storing a batch, is not waiting there); what a lost wake-up
        leaves behind is read within IDLE_LAG_INTERVAL.
        """
        read = self.lag_read
        return (
            read is not None
            and self.receiving
            and read[0] == self.delivered
            and read[1] == 0
            and now - read[2] < IDLE_LAG_INTERVAL
        )


class Triggerer:
    """Runs the consumers of every active watcher and turns messages into events.

    Args:
        db: the metadata database.
        listener: wake-ups from publishers of local:// messages.
        on_events: called after each commit that created events (wakes the scheduler).
        max_payload_depth: payloads nested deeper become dead letters.
        apply_timeout: seconds one `apply_function` call may take before its message
            becomes a dead letter.
        limits: the size caps (a dead letter's stored body).
        sample_interval: seconds between two samples of its watchers' health (`samples`).
    """

    def __init__(
        self,
        db: Database,
        listener: notify.Listener,
        on_events: Callable[[], None],
        owner: str = "standalone",
        max_backlog: int = MAX_BACKLOG,
        max_payload_depth: int = DEFAULT_MAX_DEPTH,
        apply_timeout: float = DEFAULT_APPLY_TIMEOUT,
        limits: SizeLimits | None = None,
        sample_interval: float = SAMPLE_INTERVAL,
        trigger_capacity: int = DEFAULT_CAPACITY,
        trigger_import_timeout: float = DEFAULT_IMPORT_TIMEOUT,
    ) -> None:
        self.db = db
        self.listener = listener
        self.on_events = on_events
        # Watchers are consumed by the triggerer holding their lease; a standalone
        # Herald always uses the same owner name, so it takes its own leases back at
        # once after a crash, while a second triggerer waits for them to expire.
        self.owner = owner
        self.identity = Identity(owner, socket.gethostname(), os.getpid(), utcnow())
        #: the consumers running here: those whose lease it holds, and every shareable one
        self.consumers: dict[str, Consumer] = {}
        self.consumers_of_asset: dict[int, list[str]] = {}
        self._wanted: dict[str, list[WatcherSpec]] = {}
        #: consumers whose lease this triggerer holds (its fair share, see `sharing`)
        self.leased: set[str] = set()
        #: leases given up to rebalance: renewed until the consumer's batch in flight is
        #: done (the task ends), then released; with the watcher ids to release
        self._releasing: dict[str, tuple[asyncio.Task[None] | None, list[int]]] = {}
        #: the live triggerers seen at the last lease round
        self.live: list[str] = [owner]
        #: messages delivered (committed and acknowledged) since it started
        self.received = 0
        #: local:// batches holding row locks (and a pooled connection each) at once
        self._local_claims = asyncio.Semaphore(LOCAL_CLAIMS)
        #: the one fallback poll of every local:// queue read here (and their depths)
        self.local_poller = LocalQueuePoller(db)
        self._poll_task: asyncio.Task[None] | None = None
        self._lag_task: asyncio.Task[None] | None = None
        #: the lag last written for each watcher: an unchanged lag is not written again
        self._lags_written: dict[int, int] = {}
        self._lease_task: asyncio.Task[None] | None = None
        # set by `update()`, and by a watcher paused or resumed (`notify.WATCHERS`)
        self._lease_wake = listener.event(notify.WATCHERS)
        #: consumer keys not consumed because one of their watchers is paused
        self._paused: set[str] = set()
        self._replay_wake = listener.event(notify.REPLAY)
        self.max_backlog = max_backlog
        self.max_payload_depth = max_payload_depth
        self.apply_timeout = apply_timeout
        #: a dead letter keeps the head of its body only (`limits.dead_letter_body` bytes)
        self.limits = limits or SizeLimits()
        self._backlog = 0
        self._backlog_checked = -1e9
        #: `received` when the backlog was last counted
        self._backlog_received = 0
        #: called at "before_commit" and "after_commit"; raising there aborts the
        #: delivery as a crash would (fault-injection tests use it)
        self.fault: Callable[[str], None] = env_fault()
        self.sampler = WatcherSampler(db, owner, sample_interval)
        self._sample_task: asyncio.Task[None] | None = None
        #: the triggers deferred tries wait on (`self.defer(trigger=...)`): this triggerer's share of them
        self.task_triggers = TaskTriggers(
            db,
            listener,
            owner,
            lambda: self.live,
            on_events,
            capacity=trigger_capacity,
            limits=self.limits,
            import_timeout=trigger_import_timeout,
        )
        self._task_triggers_task: asyncio.Task[None] | None = None

    def update(
        self,
        watchers: list[WatcherSpec],
        consumers_of_asset: dict[int, list[str]],
        dags: Mapping[str, DAG] | None = None,
    ) -> None:
        """Match the watchers of the latest DAG load: consumers start once their lease is held.

        `dags`: the DAGs of that load, whose files hold triggers deferred tries wait on.
        """
        self.consumers_of_asset = consumers_of_asset
        if dags is not None:
            self.task_triggers.update_dags(dags)
        if self._task_triggers_task is None:
            self._task_triggers_task = asyncio.create_task(self.task_triggers.run(), name="task triggers")
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
        if self._poll_task is None:
            self._poll_task = asyncio.create_task(self.local_poller.run(), name="local-poll")
        if self._sample_task is None:
            self._sample_task = asyncio.create_task(self.sampler.run(), name="watcher samples")
        self._lease_wake.set()

    def holds_all(self) -> bool:
        """True when this triggerer consumes every watcher it was given but the paused ones."""
        return set(self.consumers) >= set(self._wanted) - self._paused

    def shareable(self, key: str) -> bool:
        """True when every live triggerer runs this consumer (competing consumers)."""
        specs = self._wanted.get(key)
        if not specs:
            return False
        trigger = specs[0].watcher.trigger
        if isinstance(trigger, LocalQueueTrigger) and self.db.is_sqlite:
            return False  # its rows are locked per batch on PostgreSQL only
        return bool(getattr(trigger, "shareable", False))

    def _start_consumer(self, key: str, specs: list[WatcherSpec]) -> None:
        trigger = specs[0].watcher.trigger
        default_payload_limit(trigger, self.limits.payload)
        # The embedded queue is Herald's own database: read by the triggerer itself,
        # its rows deleted inside the delivery's transaction.
        source: Source = trigger
        if isinstance(trigger, LocalQueueTrigger):
            claims = None if self.db.is_sqlite else self._local_claims
            source = LocalQueueSource(trigger, self.db, self.listener, claims, self.local_poller)
        admission = Admission(key, self.max_payload_depth, self.apply_timeout)
        consumer = Consumer(key=key, trigger=trigger, source=source, watchers=specs, admission=admission)
        consumer.task = asyncio.create_task(self._consume(consumer), name=f"consumer {key[:80]}")
        self.consumers[key] = consumer

    def _stop_consumer(self, key: str) -> None:
        consumer = self.consumers.pop(key)
        if consumer.task is not None:
            consumer.task.cancel()
        consumer.admission.close()

    async def _hold_leases(self) -> None:
        """Every LEASE_RENEW: heartbeat, take or renew this triggerer's fair share of leases, match consumers."""
        while True:
            self._lease_wake.clear()
            try:
                await self._lease_round()
            except Exception as exc:
                # keep consuming what it holds; the database is probably restarting
                log.warning("could not renew watcher leases: %s", exc)
            self._match_consumers()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lease_wake.wait(), LEASE_RENEW)

    async def _lease_round(self) -> None:
        """One heartbeat transaction and one lease UPDATE, whatever the number of watchers.

        Idle, this is most of what a triggerer does: with a hundred watchers a
        statement per consumer every LEASE_RENEW was most of Herald's idle CPU.
        """
        db = self.db
        done = [key for key, (task, _) in self._releasing.items() if task is None or task.done()]
        if done:
            # Their last batches are committed and acknowledged: the next holders start clean.
            ids = [i for key in done for i in self._releasing[key][1]]
            await db.run(watchers.release_leases, db.engine, self.owner, ids)
            for key in done:
                del self._releasing[key]
                self.leased.discard(key)
        every_id = [s.id for specs in self._wanted.values() for s in specs]
        consuming = [w.id for c in self.consumers.values() for w in c.watchers]
        view = await db.run(triggerers.beat, db.engine, self.identity, consuming, self.received, every_id, LEASE_TTL)
        self.live = view.live
        await self._hold_back_paused(view.paused)
        groups = {
            key: [s.id for s in specs]
            for key, specs in self._wanted.items()
            if key not in self._releasing and key not in self._paused
        }
        decided = plan(self.owner, view.live, groups, view.holders)
        renew = {key: groups[key] for key in [*decided.hold, *decided.release]}
        renew.update({key: ids for key, (_, ids) in self._releasing.items()})
        owned = await db.run(watchers.claim_leases, db.engine, self.owner, renew, LEASE_TTL)
        for key in self.leased - owned - set(self._releasing):
            log.warning("lost the lease of %s; another triggerer holds it now", key[:80])
            for spec in self._wanted.get(key, []):
                self._lags_written.pop(spec.id, None)
        if owned - self.leased:
            self._replay_wake.set()  # replays asked for while another triggerer (or none) held them
        self.leased = owned
        for key in decided.release:
            if key in owned:
                log.info("handing %s over to a triggerer below its share", key[:80])
                self._hand_over(key, groups[key])

    async def _hold_back_paused(self, paused: frozenset[int]) -> None:
        """Stop the consumers of paused watchers (`paused`, as the heartbeat read them) and give their leases up.

        Watchers sharing a connection with a paused one pause with it (one
        connection reads for all of them); they show "stopped", the paused one
        stays "paused" (what a triggerer reports never overwrites it).
        """
        db = self.db
        self._paused = {key for key, specs in self._wanted.items() if paused.intersection(s.id for s in specs)}
        for key in self._paused & (set(self.consumers) | self.leased):
            log.info("watcher(s) of %s paused; their messages wait in the broker", key[:80])
            held = [s.id for s in self._wanted[key]]
            if key in self.consumers:
                self._stop_consumer(key)
            self.leased.discard(key)
            await db.run(watchers.set_state, db.engine, held, WatcherState.STOPPED)
            await db.run(watchers.release_leases, db.engine, self.owner, held)

    def _hand_over(self, key: str, ids: list[int]) -> None:
        """Give a lease up: a consumer only this lease runs stops first (its batch in flight is finished)."""
        task: asyncio.Task[None] | None = None
        consumer = self.consumers.get(key)
        if consumer is not None and not self.shareable(key):
            self._stop_consumer(key)
            task = consumer.task
        self._releasing[key] = (task, ids)
        if task is not None:
            task.add_done_callback(lambda _: self._lease_wake.set())
        else:
            self._lease_wake.set()

    def _match_consumers(self) -> None:
        """Run the consumers of the leases held, and every shareable one; stop the rest."""
        run = {key for key in self._wanted if key in self.leased or self.shareable(key)}
        run -= set(self._releasing) | self._paused
        before = set(self.consumers)
        for key in list(self.consumers):
            if key not in run and (key in self._paused or not self.shareable(key)):
                self._stop_consumer(key)
        for key in run:
            if key not in self.consumers:
                self._start_consumer(key, self._wanted[key])
        if set(self.consumers) != before:
            self._lease_wake.set()  # the heartbeat tells at once what it reads now

    async def stop(self) -> None:
        """Cancel every consumer, wait for them to close, then give the leases and the heartbeat up."""
        tasks = [c.task for c in self.consumers.values() if c.task is not None]
        for extra in (self._lag_task, self._lease_task, self._poll_task, self._sample_task, self._task_triggers_task):
            if extra is not None:
                tasks.append(extra)
        for task in tasks:
            task.cancel()
        # Consumers being handed over are stopping already: a second cancel would cut
        # short the wait for their batch in flight.
        handing_over = [task for task, _ in self._releasing.values() if task is not None]
        waited = {*tasks, *handing_over}
        if waited:
            # Bounded: a client that swallows its cancellation must not hold a stop for ever.
            # What a consumer left behind was not acknowledged: its broker delivers it again.
            ended, stuck = await asyncio.wait(waited, timeout=STOP_TIMEOUT)
            for task in ended:
                if not task.cancelled():
                    task.exception()  # seen: a consumer's last error was logged where it happened
            if stuck:
                log.warning(
                    "%d task(s) did not stop within %.0fs and are left behind: %s",
                    len(stuck),
                    STOP_TIMEOUT,
                    sorted(t.get_name() for t in stuck),
                )
        alone = self.live == [self.owner]
        # A shared consumer others still run keeps their state; one only this triggerer read is stopped.
        stopped = [w.id for c in self.consumers.values() if alone or not self.shareable(c.key) for w in c.watchers]
        held = [i for key in self.leased for i in ([s.id for s in self._wanted.get(key, [])])]
        held += [i for _, ids in self._releasing.values() for i in ids]
        for consumer in self.consumers.values():
            consumer.admission.close()
        self.consumers.clear()
        if stopped:
            with contextlib.suppress(Exception):
                await self.db.run(watchers.set_state, self.db.engine, stopped, WatcherState.STOPPED)
        if held:
            with contextlib.suppress(Exception):
                await self.db.run(watchers.release_leases, self.db.engine, self.owner, held)
        with contextlib.suppress(Exception):
            await self.task_triggers.stop()
        with contextlib.suppress(Exception):
            await self.db.run(triggerers.forget, self.db.engine, self.owner)

    async def _consume(self, consumer: Consumer) -> None:
        backoff = Backoff()
        source = consumer.source
        asked = BATCH_SIZE  # what one receive asks for: fewer after large messages
        while True:
            ids = [w.id for w in consumer.watchers]
            try:
                # A stream without acknowledgement reads on from the positions committed
                # with its events, never from what the last connection merely received.
                consumer.trigger.resume(await self.db.run(checkpoints.load, self.db.engine, ids))
                await source.open()
                await self.db.run(watchers.set_state, self.db.engine, ids, WatcherState.RUNNING)
                backoff.reset()
                while True:
                    room = await self._wait_for_room()
                    consumer.receiving = True
                    try:
                        messages = await source.receive(min(asked, room))
                    finally:
                        consumer.receiving = False
                    if _cancel_swallowed():
                        # Some clients (redis-py during a blocking XREADGROUP) swallow a
                        # cancellation and return normally; the consumer must stop anyway.
                        # What was received is unacknowledged: the broker delivers it again.
                        raise asyncio.CancelledError
                    self._backlog += len(messages)  # until the next count
                    if messages:
                        asked = batch_size_after(messages)
                        await self._deliver_to_the_end(consumer, messages)
            except asyncio.CancelledError:
                await _close_quietly(source)
                raise
            except Exception as exc:
                delay = backoff.next()
                state = WatcherState.FAILED if isinstance(exc, ImportError) else WatcherState.RECONNECTING
                error = mask_text(f"{type(exc).__name__}: {exc}")
                log.warning("watcher(s) %s: %s; retrying in %.1fs", ids, error, delay)
                log.debug("%s", traceback.format_exc())
                await _close_quietly(source)
                with contextlib.suppress(Exception):
                    await self.db.run(watchers.set_state, self.db.engine, ids, state, error)
                await asyncio.sleep(delay)

    async def _deliver_to_the_end(self, consumer: Consumer, messages: list[Message]) -> None:
        """Deliver a batch; a stop arriving meanwhile waits for its commit and ack.

        Cancelled halfway, a batch could be committed (the database thread goes on)
        and never acknowledged: the broker would deliver it again to the next
        triggerer, which could only dedupe it. A clean stop leaves nothing behind.
        """
        delivery = asyncio.ensure_future(self._deliver(consumer, messages))
        try:
            await asyncio.shield(delivery)
        except asyncio.CancelledError:
            done, _ = await asyncio.wait({delivery}, timeout=DRAIN_TIMEOUT)
            if not done:
                delivery.cancel()  # the broker will deliver the batch again: at least once holds
            elif not delivery.cancelled() and delivery.exception() is not None:
                log.debug("batch delivery during stop failed: %s", delivery.exception())
            raise

    async def _deliver(self, consumer: Consumer, messages: list[Message]) -> None:
        """The delivery contract: transform, store in one transaction, commit, then ack."""
        watching = consumer.watchers  # `update()` may replace the list while the batch is stored
        made = await consumer.admission.outcomes(watching, messages)
        sources = {s.id: mask_url(str(s.watcher.trigger.describe().get("url", ""))) for s in watching}
        source = consumer.source
        consumers_of_asset = self.consumers_of_asset

        def store(outcomes: list[Outcome], batch: list[Message]) -> int:
            # local://'s batch commits in the transaction that locked its rows
            begin = source.delivery if isinstance(source, LocalQueueSource) else self.db.engine.begin
            with begin() as conn:
                result = events.record_batch(conn, outcomes, consumers_of_asset, sources, self.limits.dead_letter_body)
                checkpoints.save_batch(conn, [w.id for w in watching], (m.checkpoint for m in batch))
                if isinstance(source, LocalQueueSource):
                    source.remove_in(conn, batch)  # the embedded queue's ack is in the transaction
                if result.events:
                    notify.notify_in(conn, notify.SCHEDULER)  # schedulers in other processes
                self.fault("before_commit")
            return result.events

        try:
            created = await self.db.run(store, made, messages)
        except Exception as exc:
            if not refused_row(exc):
                raise  # the database is away: reconnect, the broker delivers the batch again
            # One message the database refused must not hold back the batch (nor the watcher).
            created = await self.db.run(store_apart, store, made, messages, len(consumer.watchers))
        self.fault("after_commit")
        await source.ack(messages)
        self.received += len(messages)
        consumer.delivered += len(messages)
        if created:
            self.on_events()

    async def _replay(self) -> int:
        """Replay requested dead letters of the watchers whose lease this triggerer holds; returns the events made."""
        # A shareable consumer runs everywhere; its lease holder alone replays (no double replay).
        specs = {w.id: w for c in self.consumers.values() if c.key in self.leased for w in c.watchers}
        if not specs:
            return 0
        created = await self.db.run(
            replay_requested, self.db.engine, specs, self.consumers_of_asset, self.max_payload_depth, self.apply_timeout
        )
        if created:
            self.on_events()
        return created

    async def _wait_for_room(self) -> int:
        """Back-pressure: while the scheduler has a large backlog of events, take no more.

        Messages then wait in their broker (where they are safe and cheap) instead of
        piling up in the database faster than runs are made of them.
        """
        loop = asyncio.get_running_loop()
        while True:
            since = loop.time() - self._backlog_checked
            # Idle (nothing delivered since the count, under the limit), its own
            # deliveries cannot have grown the backlog: counting it after every empty
            # long poll of every consumer would be most of what an idle triggerer does.
            due = self._backlog >= self.max_backlog or self.received != self._backlog_received
            if since > BACKLOG_CHECK_INTERVAL and (due or since > BACKLOG_IDLE_CHECK_INTERVAL):
                self._backlog_checked = loop.time()
                self._backlog_received = self.received
                try:
                    self._backlog = await self.db.run(events.backlog, self.db.engine, self.max_backlog)
                except Exception:
                    self._backlog = 0  # the delivery itself will report a database problem
            if self._backlog < self.max_backlog:
                return self.max_backlog - self._backlog
            await asyncio.sleep(BACKLOG_CHECK_INTERVAL)

    async def _housekeeping(self) -> None:
        """Replay the dead letters asked for (woken, else re-checked); read the lags every LAG_INTERVAL."""
        loop = asyncio.get_running_loop()
        recheck = notify.Recheck(REPLAY_INTERVAL)
        replay_at = lag_at = loop.time() + REPLAY_INTERVAL
        while True:
            woken = await notify.wait_for_wake_up(self._replay_wake, max(0.0, min(replay_at, lag_at) - loop.time()))
            now = loop.time()
            if woken or now >= replay_at:
                self._replay_wake.clear()
                try:
                    replayed = await self._replay()
                except Exception as exc:
                    log.warning("replaying dead letters failed: %s", exc)
                    replayed = 0
                if woken or replayed:
                    recheck.reset()
                else:
                    recheck.found_nothing()
                replay_at = loop.time() + recheck.wait
            if now >= lag_at:
                lag_at = now + LAG_INTERVAL
                await self._record_lags()

    async def _record_lags(self) -> None:
        """Write the lags that changed since the last round, all in one batch (idle: no write at all).

        An idle consumer's lag is not even read (`Consumer.idle_at_zero`): with a
        hundred idle watchers, a broker round trip each every LAG_INTERVAL was most
        of what the triggerer did.
        """
        lags: dict[int, int] = {}
        now = asyncio.get_running_loop().time()
        for consumer in list(self.consumers.values()):
            if consumer.key not in self.leased:
                continue  # a shared consumer's lag is written by its lease holder
            if consumer.idle_at_zero(now):
                lags.update((w.id, 0) for w in consumer.watchers)
                continue
            delivered = consumer.delivered
            try:
                lag = await consumer.source.lag()
            except Exception:
                consumer.lag_read = None
                continue
            consumer.lag_read = None if lag is None else (delivered, lag, now)
            if lag is not None:
                lags.update((w.id, lag) for w in consumer.watchers)
        # A watcher read by another triggerer meanwhile may show its figure: forget what was written then.
        self._lags_written = {wid: lag for wid, lag in self._lags_written.items() if wid in lags}
        changed = {wid: lag for wid, lag in lags.items() if self._lags_written.get(wid) != lag}
        if not changed:
            return
        try:
            await self.db.run(watchers.set_lags, self.db.engine, changed)
        except Exception:
            return  # written at the next round
        self._lags_written.update(changed)


def _cancel_swallowed() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _close_quietly(trigger: Source) -> None:
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


def default_payload_limit(trigger: BaseEventTrigger, limit: int) -> None:
    """Give a trigger that sets no `max_payload_bytes` the deployment's (HERALD_MAX_PAYLOAD_BYTES).

    A DAG file is read without Herald's settings (the SDK does not import them), so
    the triggerer that consumes the trigger fills in the default.
    """
    if not trigger.max_payload_bytes_given:
        trigger.max_payload_bytes = limit
