"""`redis+pubsub://HOST:PORT/DB?channels=a,b`: Redis pub/sub channels. At most once, by nature.

Pub/sub keeps nothing: a message published while no subscriber is connected
(the triggerer restarting, a lost connection) is gone, and a message is gone
from Redis the moment it is delivered, before Herald commits its event. So
this trigger gives at most once, and says so in `describe()` and on the
watcher. For at-least-once delivery use a stream (`redis://...?stream=S&group=G`).

Each message is its own event: pub/sub has no message identity to dedupe on,
so the dedupe key is made unique per delivery.

Options, in the URL's query or as keyword arguments: `channels` (required,
comma-separated) and `block_ms`, how long one receive waits for a message
(default 5000; it returns as soon as one is there).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from herald.triggers.base import (
    BaseEventTrigger,
    BrokerOptions,
    BrokerPublisher,
    Message,
    ParsedOptions,
    header_text,
    parse_options,
)
from herald.triggers.urls import mask_url, shown_url

DEFAULT_BLOCK_MS = 5000
#: what describe() says of the delivery this broker can give
DELIVERY = "at most once: Redis pub/sub keeps no message for a subscriber that is not connected"


@dataclass(frozen=True)
class RedisPubSubOptions(BrokerOptions):
    """The options of a Redis pub/sub trigger and publisher (URL query or keyword arguments).

    Query options that are not these are redis-py's and stay in the URL.

    Attributes:
        channels: the channels to subscribe or publish to (`a,b` in a URL, a list as a keyword).
        block_ms: how long one receive waits for a message.
    """

    channels: tuple[str, ...] = ()
    block_ms: int = DEFAULT_BLOCK_MS

    BROKER: ClassVar[str] = "Redis pub/sub"
    PASSTHROUGH_QUERY: ClassVar[bool] = True


def _parse(url: str, options: dict[str, Any]) -> ParsedOptions[RedisPubSubOptions]:
    parts = urlsplit(url)
    if parts.scheme not in ("redis+pubsub", "rediss+pubsub"):
        raise ValueError(
            f"{mask_url(url)!r} is not a Redis pub/sub URL: expected redis+pubsub://HOST:PORT/DB?channels=a,b"
        )
    return parse_options(RedisPubSubOptions, url, options)


def _client_url(url: str) -> str:
    """redis-py's URL: `redis://` (or `rediss://`) for `redis+pubsub://`."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.partition("+")[0], parts.netloc, parts.path, parts.query, ""))


class RedisPubSubTrigger(BaseEventTrigger):
    """Subscribes to Redis pub/sub channels; every message published while subscribed becomes one event.

    Args:
        url: `redis+pubsub://[:PASSWORD@]HOST:PORT/DB` (or `rediss+pubsub://`).
        channels: the channels to subscribe to.
        block_ms: how long one receive waits for a message.
    """

    scheme = "redis+pubsub"

    def __init__(self, url: str, **options: Any) -> None:
        parsed = _parse(url, options)
        super().__init__(**parsed.common)
        o = parsed.options
        if not o.channels:
            raise ValueError(f"a Redis pub/sub trigger needs channels=a,b, got {mask_url(url)!r}")
        self.options = o
        self.url = parsed.url
        self.channels = list(o.channels)
        self.block_ms = o.block_ms
        self._client: aioredis.Redis | None = None
        self._pubsub: Any = None

    async def open(self) -> None:
        base = _client_url(self.url)
        # No retry inside redis-py: a lost connection reaches the triggerer, which shows it and reopens.
        client = aioredis.Redis.from_url(base, retry=Retry(NoBackoff(), 0))
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(*self.channels)
        except BaseException:
            await asyncio.shield(pubsub.aclose())  # type: ignore[no-untyped-call]
            await asyncio.shield(client.aclose())
            raise
        self._client, self._pubsub = client, pubsub

    async def receive(self, max_messages: int) -> list[Message]:
        """Wait up to `block_ms` for a message, then take those already there, up to `max_messages`."""
        pubsub = self._require_pubsub()
        messages: list[Message] = []
        deadline = time.monotonic() + self.block_ms / 1000
        while len(messages) < max_messages:
            # After the first message, take only what is already there.
            wait = max(0.0, deadline - time.monotonic()) if not messages else 0.0
            raw = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
            if raw is None:
                if messages or time.monotonic() >= deadline:
                    break
                continue
            if raw.get("type") not in ("message", "pmessage"):
                continue
            messages.append(self._message(raw))
        return messages

    def _message(self, raw: dict[str, Any]) -> Message:
        channel = header_text(raw.get("channel"))
        data = raw.get("data")
        body = data if isinstance(data, bytes) else str(data).encode("utf-8")
        metadata: dict[str, Any] = {"broker": "redis+pubsub", "channel": channel, "pattern": raw.get("pattern")}
        if metadata["pattern"] is not None:
            metadata["pattern"] = header_text(metadata["pattern"])
        # Pub/sub gives a message no identity: each delivery is its own event.
        return Message(body=body, dedupe_key=f"{channel}:{uuid.uuid4().hex}", metadata=metadata)

    async def ack(self, messages: list[Message]) -> None:
        """Nothing to acknowledge: Redis forgot the messages when it delivered them."""

    async def close(self) -> None:
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        # Shielded: a close cut short by a cancellation leaves sockets open.
        if pubsub is not None:
            await asyncio.shield(pubsub.aclose())
        if client is not None:
            await asyncio.shield(client.aclose())

    def describe(self) -> dict[str, Any]:
        return {
            "url": shown_url(self.url, channels=self.channels),
            "broker": "redis+pubsub",
            "channels": self.channels,
            "block_ms": self.block_ms,
            "delivery": DELIVERY,
        }

    def _require_pubsub(self) -> Any:
        if self._pubsub is None:
            raise ConnectionError("the Redis pub/sub trigger is not open")
        return self._pubsub


# -- publishing ----------------------------------------------------------------------------


class RedisPubSubPublisher(BrokerPublisher):
    """PUBLISHes `body` to every channel of the URL (`?channels=a,b`) on one client per server.

    Pub/sub has no headers: giving some is an error.
    """

    options_class = RedisPubSubOptions

    @classmethod
    def parse(cls, url: str) -> ParsedOptions[Any]:
        return _parse(url, {})

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._client: aioredis.Redis | None = None

    async def open(self) -> None:
        self._client = aioredis.Redis.from_url(_client_url(self.pool_key(self.url)))

    async def publish(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        if headers:
            raise ValueError("Redis pub/sub messages have no headers; put them in the body")
        options: RedisPubSubOptions = self.parse(url).options
        if not options.channels:
            raise ValueError(f"{mask_url(url)!r} names no channel: add ?channels=NAME")
        assert self._client is not None
        for channel in options.channels:
            await self._client.publish(channel, body)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
