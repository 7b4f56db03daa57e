"""`local://NAME`: the embedded queue kept in the metadata database.

Needs no broker, so the demo and a first-time user run with nothing else
installed. This module only declares the queue a watcher reads: the messages
live in Herald's own database, so the triggerer consumes them itself
(`herald.triggerer.local_queue`), deleting each batch's rows in the transaction
that stores its events (exactly once; the row id is still the dedupe key).
No code here touches the database.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from herald.triggers.base import BaseEventTrigger, Message


def queue_name(url: str) -> str:
    """The queue name of `local://NAME`."""
    parts = urlsplit(url)
    name = (parts.netloc + parts.path).strip("/")
    if parts.scheme != "local" or not name:
        raise ValueError(f"{url!r} is not a local queue URL: expected local://NAME")
    return name


class LocalQueueTrigger(BaseEventTrigger):
    """Names `local://NAME`, the queue kept in Herald's own database.

    The triggerer reads it through its embedded queue, not through this object:
    `open`, `receive` and `ack` refuse to run outside it.

    Args:
        url: `local://NAME`.
        **options: `apply_function`, `filter`, `max_payload_bytes`.
    """

    scheme = "local"
    #: on PostgreSQL each batch's rows are locked (SKIP LOCKED) until its events commit,
    #: so several triggerers read one queue; on SQLite one process reads it anyway
    shareable = True

    def __init__(self, url: str, **options: Any) -> None:
        unknown = sorted(set(options) - {"apply_function", "filter", "max_payload_bytes"})
        if unknown:
            raise ValueError(f"unknown local option(s) {unknown}; valid: apply_function, filter, max_payload_bytes")
        super().__init__(**options)
        self.queue = queue_name(url) if "://" in url else url.strip("/")
        if not self.queue:
            raise ValueError(f"invalid local queue name {url!r}")

    def _refuse(self) -> RuntimeError:
        return RuntimeError("local:// is read by the triggerer's embedded queue (herald.triggerer.local_queue)")

    async def open(self) -> None:
        raise self._refuse()

    async def receive(self, max_messages: int) -> list[Message]:
        raise self._refuse()

    async def ack(self, messages: list[Message]) -> None:
        raise self._refuse()

    def describe(self) -> dict[str, Any]:
        return {"url": f"local://{self.queue}", "broker": "local", "queue": self.queue}
