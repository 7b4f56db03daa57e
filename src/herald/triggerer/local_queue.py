"""The embedded `local://` queue, consumed by the triggerer itself.

Its messages are rows of the metadata database (`herald.store.local_queue`), so
the consumer loop handles it explicitly instead of through the broker
contract: `LocalQueueSource` receives rows like a trigger would, and the
delivery deletes a batch's rows inside the transaction that stores its events
(`remove_in`), so there is no acknowledgement step after the commit.

On PostgreSQL several triggerers read one queue: a batch's rows are locked
(`FOR UPDATE SKIP LOCKED`) by the transaction that then stores their events
(`delivery`), so each reader gets other rows and a killed one's rows are free
again as soon as its connection drops.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from herald import notify
from herald.sdk.triggers import Message, Publisher
from herald.store import local_queue
from herald.triggers.local import LocalQueueTrigger, queue_name

log = logging.getLogger("herald.triggerer.local_queue")

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from herald.config import Settings
    from herald.store.db import Database

# Every publisher wakes the consumer (a datagram on SQLite, NOTIFY on PostgreSQL,
# or the triggerer itself for a publish it committed), so this re-read only covers
# a lost wake-up: one query for all the idle queues of the triggerer
# (`LocalQueuePoller`), not one per queue, FALLBACK_POLL_SECONDS after the last one
# that found a message and less often while none does (`notify.Recheck`).
FALLBACK_POLL_SECONDS = 2.0
#: how long one count of every queue serves the consumers' `lag()` calls of a round
DEPTHS_FRESH_SECONDS = 1.0


class LocalQueuePoller:
    """The fallback re-read of every `local://` queue of a triggerer, in one query.

    A source whose queue is empty waits on its wake-up event and tells the poller
    (`idle`); the poller asks the database which of the idle queues hold messages
    (`store.local_queue.queues_with_messages`) and sets the events of those only.
    With 100 idle watchers that is one query per period instead of 100. The
    period is `interval` after a poll that found a message, and doubles after
    each that found none, up to `longest`. It also counts every queue's depth in
    one query for the consumers' `lag()`.
    """

    def __init__(
        self, db: Database, interval: float = FALLBACK_POLL_SECONDS, longest: float = notify.RECHECK_LONGEST
    ) -> None:
        self._db = db
        self.interval = interval
        self._recheck = notify.Recheck(interval, longest)
        #: queue -> the events of its sources waiting for a message
        self._idle: dict[str, set[asyncio.Event]] = {}
        #: every queue a source reads (for the depths)
        self._queues: dict[str, int] = {}
        self._depths: dict[str, int] = {}
        self._depths_at = -1e9
        self._depths_lock = asyncio.Lock()
        #: queries made (a test counts them)
        self.polls = 0

    def track(self, queue: str) -> None:
        """A source reads `queue` (until `untrack`)."""
        self._queues[queue] = self._queues.get(queue, 0) + 1

    def untrack(self, queue: str) -> None:
        """A source of `queue` closed."""
        left = self._queues.get(queue, 0) - 1
        if left > 0:
            self._queues[queue] = left
        else:
            self._queues.pop(queue, None)

    def idle(self, queue: str, event: asyncio.Event) -> None:
        """`event` waits for a message in `queue`: set it when a poll finds one."""
        self._idle.setdefault(queue, set()).add(event)

    def busy(self, queue: str, event: asyncio.Event) -> None:
        """`event` no longer waits (it was set, or its source stopped)."""
        events = self._idle.get(queue)
        if events is not None:
            events.discard(event)
            if not events:
                del self._idle[queue]

    async def poll_once(self) -> set[str]:
        """One query for every idle queue; wakes those that hold messages and returns them."""
        queues = sorted(self._idle)
        if not queues:
            return set()
        self.polls += 1
        found = await self._db.run(local_queue.queues_with_messages, self._db.engine, queues)
        for queue in found:
            for event in self._idle.get(queue, ()):
                event.set()
        return found

    async def run(self) -> None:
        """Poll until cancelled: soon after a poll that found a message, less often while none does."""
        while True:
            await asyncio.sleep(self._recheck.wait)
            try:
                found = await self.poll_once()
            except Exception as exc:  # the database is away; the consumers will say so
                log.debug("polling the local:// queues failed: %s", exc)
                found = set()
            if found:
                self._recheck.reset()
            else:
                self._recheck.found_nothing()

    async def depth(self, queue: str) -> int:
        """Messages waiting in `queue`, from one count of every tracked queue made at most DEPTHS_FRESH_SECONDS ago."""
        loop = asyncio.get_running_loop()
        async with self._depths_lock:
            if loop.time() - self._depths_at > DEPTHS_FRESH_SECONDS or queue not in self._depths:
                queues = sorted({*self._queues, queue})
                self._depths = await self._db.run(local_queue.depths, self._db.engine, queues)
                self._depths_at = loop.time()
            return self._depths.get(queue, 0)


class LocalQueueSource:
    """Reads one `local://` queue for the consumer loop, in place of a broker trigger.

    Args:
        trigger: the watcher's `LocalQueueTrigger` (names the queue).
        db: the metadata database.
        listener: wake-ups sent by publishers.
        claims: on PostgreSQL, the triggerer's bound on batches holding row locks at
            once (each holds a pooled connection until its events commit); None reads
            without locks (SQLite: one process reads the queue).
        poller: the triggerer's one fallback poll of all its queues; None re-reads
            this queue alone every FALLBACK_POLL_SECONDS.
    """

    def __init__(
        self,
        trigger: LocalQueueTrigger,
        db: Database,
        listener: notify.Listener,
        claims: asyncio.Semaphore | None = None,
        poller: LocalQueuePoller | None = None,
    ) -> None:
        self.trigger = trigger
        self.queue = trigger.queue
        self._db = db
        self._listener = listener
        self._poller = poller
        self._event: asyncio.Event | None = None
        self._claims = claims
        #: the open transaction locking the batch received last (PostgreSQL)
        self._claim: Connection | None = None
        self._claim_lock = threading.Lock()
        #: this source holds one of `claims` (from the claim until ack or close)
        self._holding = False
        #: the last batch took every message there was: the next one comes with a wake-up
        self._drained = False

    async def open(self) -> None:
        if self._event is None and self._poller is not None:
            self._poller.track(self.queue)
        self._event = self._listener.event(notify.local_channel(self.queue))

    async def receive(self, max_messages: int) -> list[Message]:
        # No cursor: the delivery deletes a batch's rows in the transaction that
        # stores its events, before receive is called again, so the oldest rows
        # left are always the ones not yet delivered (ids that commit out of
        # order on PostgreSQL cannot be skipped).
        assert self._event is not None, "open() first"
        if self._drained and not self._event.is_set():
            # nothing was published since: a read now would find nothing (a transaction, for
            # nothing, after each batch)
            await self._wait(self._event)
        self._event.clear()
        rows = await self._take(max_messages)
        if not rows:
            await self._wait(self._event)
            rows = await self._take(max_messages)
        self._drained = len(rows) < max_messages
        received_at = datetime.now(UTC)  # one read: one time for its batch
        published: dict[datetime, str] = {}  # one publish's messages share their time
        return [
            Message(
                body=bytes(body),
                # The publisher's key: a publish sent again after a lost reply (stored
                # twice only if its first row was consumed meanwhile) is deduped as an
                # event. Rows from before migration 0020 have none: their id then.
                dedupe_key=publish_key or str(row_id),
                headers=dict(headers or {}),
                metadata={
                    "broker": "local",
                    "queue": self.queue,
                    "message_id": int(row_id),
                    "published_at": published.get(created_at)
                    or published.setdefault(created_at, created_at.isoformat()),
                },
                received_at=received_at,
                handle=int(row_id),
            )
            for row_id, body, headers, created_at, publish_key in rows
        ]

    async def _wait(self, event: asyncio.Event) -> None:
        """Until a publisher's wake-up, or the fallback poll found a message (or its period passed)."""
        poller = self._poller
        if poller is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), FALLBACK_POLL_SECONDS)
        else:
            poller.idle(self.queue, event)
            try:
                await event.wait()
            finally:
                poller.busy(self.queue, event)
        event.clear()

    async def _take(self, limit: int) -> list[Any]:
        """The oldest rows: read (SQLite), or locked in a transaction the delivery commits (PostgreSQL)."""
        db = self._db
        if self._claims is None:
            return await db.run(local_queue.fetch, db.engine, self.queue, 0, limit)
        await self._claims.acquire()
        self._holding = True
        pending = asyncio.ensure_future(db.run(local_queue.claim, db.engine, self.queue, limit))
        try:
            claimed = await asyncio.shield(pending)
        except asyncio.CancelledError:
            # The claim goes on in its thread: its locks must not outlive the consumer.
            pending.add_done_callback(_discard_claim)
            self._release_hold()
            raise
        except BaseException:
            self._release_hold()
            raise
        if claimed is None:
            self._release_hold()
            return []
        with self._claim_lock:
            self._claim, rows = claimed
        return rows

    @contextlib.contextmanager
    def delivery(self) -> Iterator[Connection]:
        """The transaction that stores a batch: the one locking its rows, if any (runs in a db thread)."""
        with self._claim_lock:
            claim, self._claim = self._claim, None
        if claim is None:
            with self._db.engine.begin() as conn:
                yield conn
            return
        try:
            yield claim
            claim.commit()
        finally:
            claim.close()  # rolls back what was not committed: the rows are free again

    def remove_in(self, conn: Connection, messages: Sequence[Message]) -> None:
        """Delete the messages' rows inside the delivery's transaction (their acknowledgement)."""
        local_queue.remove(conn, [int(m.handle) for m in messages])

    async def ack(self, messages: list[Message]) -> None:
        """`remove_in` deleted the rows with the events; the batch's lock slot is free."""
        self._release_hold()

    def _release_hold(self) -> None:
        if self._holding and self._claims is not None:
            self._holding = False
            self._claims.release()

    async def close(self) -> None:
        if self._event is not None and self._poller is not None:
            self._poller.untrack(self.queue)
        self._event = None
        with self._claim_lock:
            claim, self._claim = self._claim, None
        if claim is not None:
            await self._db.run(claim.close)  # a batch received and never stored: its rows go back
        self._release_hold()

    async def lag(self) -> int | None:
        if self._poller is not None:
            return await self._poller.depth(self.queue)  # one count for every queue
        return await self._db.run(local_queue.depth, self._db.engine, self.queue)


def _discard_claim(done: asyncio.Future[tuple[Connection, list[Any]] | None]) -> None:
    """Give back the rows of a claim whose consumer was cancelled while it was being made."""
    if done.cancelled() or done.exception() is not None:
        return
    claimed = done.result()
    if claimed is not None:
        claimed[0].close()


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _engine(url: str) -> Engine:
    from herald.store.db import make_engine
    from herald.store.migrate import is_current, upgrade

    with _engines_lock:
        if url not in _engines:
            if not _engines:
                atexit.register(_dispose_engines)
            engine = make_engine(url, pool_size=1)
            if not is_current(engine):
                upgrade(engine)  # publishing before Herald ever started: the queue still works
            _engines[url] = engine
        return _engines[url]


def _dispose_engines() -> None:
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


_settings_cache: dict[frozenset[tuple[str, str]], Settings] = {}


def _settings_of_environment() -> Settings:
    """`Settings()`, made once per set of HERALD_* variables (it reads files too: ~5 ms a publish otherwise)."""
    from herald.config import Settings

    key = frozenset([("", os.getcwd()), *((k, v) for k, v in os.environ.items() if k.startswith("HERALD_"))])
    found = _settings_cache.get(key)
    if found is None:
        found = _settings_cache[key] = Settings()
    return found


def local_publish(
    queue: str,
    bodies: Sequence[bytes],
    headers: dict[str, str] | None = None,
    settings: Settings | None = None,
) -> list[str]:
    """Append messages to `local://queue` and wake the triggerer; returns their keys once committed.

    On SQLite, while a Herald that reads the queues runs, they are committed to
    its publish inbox, which it moves into the queue in batches
    (`herald.triggerer.inbox`); with no Herald running, or on PostgreSQL, they
    are written to the database here. Each message carries a key made here: its
    dedupe key (`dedupe_key` in its event's `extra["message"]`), which also keeps
    a message written twice (an inbox commit that failed, then the direct
    write) one message.
    """
    from herald.triggerer import inbox

    if not bodies:
        return []
    url = _db_url(settings)
    publish = local_queue.Publish(queue, list(bodies), dict(headers or {}), local_queue.new_keys(len(bodies)))
    if not notify.is_postgres(url) and inbox.publish(url, publish):
        return list(publish.keys)
    local_queue.put(_engine(url), queue, publish.bodies, publish.headers, publish.keys)
    return list(publish.keys)


def _db_url(settings: Settings | None) -> str:
    """The settings' database URL, worked out once per home and URL (it builds paths: ~35 us a publish)."""
    settings = settings or _settings_of_environment()
    return _db_url_of(settings.home, settings.database_url)


@functools.lru_cache(maxsize=64)
def _db_url_of(home: Path, database_url: str | None) -> str:
    from herald.config import Settings

    return Settings.model_construct(home=home, database_url=database_url).db_url


class LocalQueuePublisher(Publisher):
    """Appends messages to `local://NAME` in the database of this process's settings."""

    @classmethod
    def pool_key(cls, url: str) -> str:
        return "local://"  # one engine per database, whichever queue

    async def open(self) -> None:
        """Nothing to open: the engine is shared per database URL."""

    async def publish(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        await asyncio.to_thread(local_publish, queue_name(url), [body], headers)

    async def close(self) -> None:
        """Nothing to close: the engines are disposed at exit."""
