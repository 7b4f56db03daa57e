"""`local://NAME`: the embedded queue kept in the metadata database.

Needs no broker, so the demo and a first-time user run with nothing else
installed. Messages are deleted in the same transaction that stores their
events: exactly once, no dedupe needed (the row id is still the dedupe key).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlsplit

from herald.triggers.base import BaseEventTrigger, Message, TriggerRuntime

# Every publisher wakes the consumer (a datagram on SQLite, NOTIFY on PostgreSQL),
# so this re-read only covers a lost wake-up. It is what an idle Herald spends
# its CPU on: 100 idle queues polled every 0.5 s cost about 3% of a core.
FALLBACK_POLL_SECONDS = 2.0


def queue_name(url: str) -> str:
    """The queue name of `local://NAME`."""
    parts = urlsplit(url)
    name = (parts.netloc + parts.path).strip("/")
    if parts.scheme != "local" or not name:
        raise ValueError(f"{url!r} is not a local queue URL: expected local://NAME")
    return name


class LocalQueueTrigger(BaseEventTrigger):
    """Consumes `local://NAME`, the queue kept in Herald's own database.

    Args:
        queue: the queue name.
    """

    scheme = "local"
    transactional_ack = True

    def __init__(self, queue: str, **options: Any) -> None:
        super().__init__(**options)
        if not queue or not queue.strip("/"):
            raise ValueError(f"invalid local queue name {queue!r}")
        self.queue = queue
        self._runtime: TriggerRuntime | None = None
        self._event: asyncio.Event | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> LocalQueueTrigger:
        return cls(queue_name(url), **options)

    def bind(self, runtime: TriggerRuntime) -> None:
        self._runtime = runtime

    async def open(self) -> None:
        if self._runtime is None:
            raise RuntimeError("local:// needs the triggerer's runtime; bind() was not called")
        self._event = self._runtime.local_event(self.queue)

    async def receive(self, max_messages: int) -> list[Message]:
        # No cursor: the triggerer deletes a batch's rows in the transaction that
        # stores its events, before it calls receive again, so the oldest rows
        # left are always the ones not yet delivered (ids that commit out of
        # order on PostgreSQL cannot be skipped).
        assert self._runtime is not None and self._event is not None
        self._event.clear()
        rows = await self._runtime.local_fetch(self.queue, 0, max_messages)
        if not rows:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), FALLBACK_POLL_SECONDS)
            self._event.clear()
            rows = await self._runtime.local_fetch(self.queue, 0, max_messages)
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

    def ack_in_transaction(self, connection: Any, messages: list[Message]) -> None:
        assert self._runtime is not None
        self._runtime.local_remove(connection, [int(m.handle) for m in messages])

    async def ack(self, messages: list[Message]) -> None:
        """Nothing to do: `ack_in_transaction` deleted the rows with the events."""

    def describe(self) -> dict[str, Any]:
        return {"url": f"local://{self.queue}", "broker": "local", "queue": self.queue}


async def publish(url: str, body: bytes, headers: dict[str, str] | None = None) -> None:
    """Append a message to `local://NAME` in the database of this process's settings."""
    from herald.publishing import local_publish

    await asyncio.to_thread(local_publish, queue_name(url), [body], headers)
