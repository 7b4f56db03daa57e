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
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from herald import notify
from herald.sdk.triggers import Message, Publisher
from herald.store import local_queue
from herald.triggers.local import LocalQueueTrigger, queue_name

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from herald.config import Settings
    from herald.store.db import Database

# Every publisher wakes the consumer (a datagram on SQLite, NOTIFY on PostgreSQL),
# so this re-read only covers a lost wake-up. It is what an idle Herald spends
# its CPU on: 100 idle queues polled every 0.5 s cost about 3% of a core.
FALLBACK_POLL_SECONDS = 2.0


class LocalQueueSource:
    """Reads one `local://` queue for the consumer loop, in place of a broker trigger.

    Args:
        trigger: the watcher's `LocalQueueTrigger` (names the queue).
        db: the metadata database.
        listener: wake-ups sent by publishers.
        claims: on PostgreSQL, the triggerer's bound on batches holding row locks at
            once (each holds a pooled connection until its events commit); None reads
            without locks (SQLite: one process reads the queue).
    """

    def __init__(
        self,
        trigger: LocalQueueTrigger,
        db: Database,
        listener: notify.Listener,
        claims: asyncio.Semaphore | None = None,
    ) -> None:
        self.trigger = trigger
        self.queue = trigger.queue
        self._db = db
        self._listener = listener
        self._event: asyncio.Event | None = None
        self._claims = claims
        #: the open transaction locking the batch received last (PostgreSQL)
        self._claim: Connection | None = None
        self._claim_lock = threading.Lock()
        #: this source holds one of `claims` (from the claim until ack or close)
        self._holding = False

    async def open(self) -> None:
        self._event = self._listener.event(notify.local_channel(self.queue))

    async def receive(self, max_messages: int) -> list[Message]:
        # No cursor: the delivery deletes a batch's rows in the transaction that
        # stores its events, before receive is called again, so the oldest rows
        # left are always the ones not yet delivered (ids that commit out of
        # order on PostgreSQL cannot be skipped).
        assert self._event is not None, "open() first"
        self._event.clear()
        rows = await self._take(max_messages)
        if not rows:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), FALLBACK_POLL_SECONDS)
            self._event.clear()
            rows = await self._take(max_messages)
        return [
            Message(
                body=bytes(body),
                dedupe_key=str(row_id),
                headers=dict(headers or {}),
                metadata={
                    "broker": "local",
                    "queue": self.queue,
                    "message_id": int(row_id),
                    "published_at": created_at.isoformat(),
                },
                handle=int(row_id),
            )
            for row_id, body, headers, created_at in rows
        ]

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
        self._event = None
        with self._claim_lock:
            claim, self._claim = self._claim, None
        if claim is not None:
            await self._db.run(claim.close)  # a batch received and never stored: its rows go back
        self._release_hold()

    async def lag(self) -> int | None:
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


def local_publish(
    queue: str,
    bodies: Sequence[bytes],
    headers: dict[str, str] | None = None,
    settings: Settings | None = None,
) -> list[int]:
    """Append messages to `local://queue` and wake the triggerer; returns their ids."""
    from herald.config import Settings

    url = (settings or Settings()).db_url
    return local_queue.put(_engine(url), queue, bodies, headers)


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
