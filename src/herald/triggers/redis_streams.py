"""`redis://HOST:PORT/DB?stream=S&group=G`: a Redis stream read through a consumer group.

Entries are read with XREADGROUP (BLOCK is the long poll) and acknowledged with
XACK only after their events are committed. An entry stays in the group's
pending list until then, so nothing is lost when Herald dies:

- after every (re)connection the consumer first re-reads its own pending
  entries (id `0`), those it was given but never acknowledged;
- entries left pending by another consumer that died (a triggerer that will
  not come back under the same name) are taken over with XAUTOCLAIM once idle
  for `claim_idle_ms`, on open and then periodically.

A redelivered entry carries the same `stream:entry-id` dedupe key, so it never
becomes a second event.

The body is the entry's `body` field; its other fields are the headers (what
`publish` writes). An entry without a `body` field (written by another tool)
is delivered with all its fields as a JSON object for a body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from herald.triggers.base import (
    BaseEventTrigger,
    BrokerOptions,
    BrokerPublisher,
    Message,
    millis_text,
    parse_options,
)
from herald.triggers.urls import mask_url, query_options, shown_url

log = logging.getLogger("herald.triggers.redis")

#: an entry that comes ends the BLOCK at once, so a long one costs no latency; it only
#: sets how often an idle consumer asks again (with a hundred watchers, 5 s blocks were
#: most of an idle triggerer's work) and, with READ_MARGIN_S, how soon a connection that
#: died silently is noticed
DEFAULT_BLOCK_MS = 30000
DEFAULT_CLAIM_IDLE_MS = 30000
#: how much longer than one BLOCK the client waits for its answer. redis-py (5+) gives up
#: on any read after `socket_timeout` (5 s by default), which is exactly one BLOCK: a
#: quiet stream would then read as a lost connection every 5 s, shown as the watcher's error.
READ_MARGIN_S = 5.0


@dataclass(frozen=True)
class RedisStreamOptions(BrokerOptions):
    """The options of a Redis stream trigger and publisher (URL query or keyword arguments).

    Query options that are not these are redis-py's (`socket_timeout`...) and stay in the URL.

    Attributes:
        stream: the stream key.
        group: the consumer group.
        consumer: this consumer's name in the group (default `HOSTNAME-PID`).
        block_ms: how long one XREADGROUP waits for new entries (the long poll; default 30 s).
        claim_idle_ms: entries pending this long with another consumer are claimed.
        start_id: where a newly created group starts (`0` or `$`).
        maxlen: the publisher trims the stream to about this many entries.
    """

    stream: str = ""
    group: str = ""
    consumer: str | None = None
    block_ms: int = DEFAULT_BLOCK_MS
    claim_idle_ms: int = DEFAULT_CLAIM_IDLE_MS
    start_id: str = "0"
    maxlen: int | None = None

    BROKER: ClassVar[str] = "Redis stream"
    PASSTHROUGH_QUERY: ClassVar[bool] = True


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _seconds(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"Redis stream option socket_timeout={value!r} is not a number of seconds") from None


def default_consumer_name() -> str:
    """`HOSTNAME-PID`: unique per triggerer process, so a dead one's entries can be claimed."""
    return f"{socket.gethostname()}-{os.getpid()}"


class RedisStreamTrigger(BaseEventTrigger):
    """Consumes a Redis stream through a consumer group (created with MKSTREAM if missing).

    Args:
        url: `redis://[:PASSWORD@]HOST:PORT/DB` (or `rediss://`); other query
            options are passed to redis-py.
        stream: the stream key.
        group: the consumer group.
        consumer: this consumer's name in the group (default `HOSTNAME-PID`).
        block_ms: how long one XREADGROUP waits for new entries (the long poll;
            default 30 s; entries that come end it at once).
        claim_idle_ms: entries pending this long with another consumer are
            claimed (XAUTOCLAIM); also how often that check runs.
        start_id: where a newly created group starts (`0`: the whole stream,
            `$`: only new entries).
    """

    scheme = "redis"
    #: a consumer group, each triggerer its own consumer name (see `__init__`)
    shareable = True

    def __init__(self, url: str, **options: Any) -> None:
        parsed = parse_options(RedisStreamOptions, url, options)
        super().__init__(**parsed.common)
        o = parsed.options
        if not o.stream or not o.group:
            raise ValueError(f"a Redis stream trigger needs stream= and group=, got {mask_url(url)!r}")
        self.options = o
        self.url = parsed.url
        self.stream = o.stream
        self.group = o.group
        self.consumer = o.consumer or default_consumer_name()
        # A derived name differs in every process: keep it out of describe(), which is stored.
        self._consumer_given = o.consumer is not None
        # Triggerers sharing one consumer name would re-read each other's pending entries.
        self.shareable = not self._consumer_given
        self.block_ms = o.block_ms
        self.claim_idle_ms = o.claim_idle_ms
        self.start_id = o.start_id
        given = query_options(self.url).get("socket_timeout")
        if given is not None and _seconds(given) * 1000 <= self.block_ms:
            raise ValueError(
                f"Redis stream option socket_timeout={given} is not longer than block_ms={self.block_ms}: "
                "every quiet poll would time out; raise socket_timeout or lower block_ms"
            )
        self._client: aioredis.Redis | None = None
        #: where re-reading our own pending entries is; None once they are all read
        self._pending_cursor: str | None = "0"
        self._claim_cursor = "0-0"
        self._next_claim = 0.0

    @property
    def client_name(self) -> str:
        """The CLIENT SETNAME of this trigger's connections (shown by CLIENT LIST)."""
        return f"herald:{self.stream}:{self.group}:{self.consumer}".replace(" ", "_")

    async def open(self) -> None:
        # No retry inside redis-py: a lost connection must reach the triggerer, which
        # shows it on the watcher and reopens, and reopening re-reads our pending entries.
        # The read timeout outlasts the BLOCK (a socket_timeout in the URL wins, checked above).
        self._client = aioredis.Redis.from_url(
            self.url,
            client_name=self.client_name,
            retry=Retry(NoBackoff(), 0),
            socket_timeout=self.block_ms / 1000 + READ_MARGIN_S,
        )
        try:
            await self._client.xgroup_create(self.stream, self.group, id=self.start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._pending_cursor = "0"
        self._claim_cursor = "0-0"
        self._next_claim = 0.0

    async def receive(self, max_messages: int) -> list[Message]:
        client = self._require_client()
        if self._pending_cursor is not None:
            # Our own entries delivered before a reconnect and never acknowledged.
            response = await client.xreadgroup(
                self.group, self.consumer, {self.stream: self._pending_cursor}, count=max_messages
            )
            entries = self._entries(response)
            if entries:
                self._pending_cursor = _text(entries[-1][0])
                return await self._messages(entries)
            self._pending_cursor = None
        if time.monotonic() >= self._next_claim:
            messages = await self._claim(max_messages)
            if messages:
                return messages
        response = await client.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=max_messages, block=self.block_ms
        )
        return await self._messages(self._entries(response))

    async def _claim(self, max_messages: int) -> list[Message]:
        """Take over entries idle for `claim_idle_ms` in another consumer's pending list."""
        client = self._require_client()
        result = await client.xautoclaim(
            self.stream, self.group, self.consumer, self.claim_idle_ms, self._claim_cursor, count=max_messages
        )
        next_cursor, entries = _text(result[0]), list(result[1])
        if next_cursor == "0-0":
            # A full pass over the pending list: look again in claim_idle_ms.
            self._next_claim = time.monotonic() + self.claim_idle_ms / 1000
        self._claim_cursor = next_cursor
        if entries:
            log.info("claimed %d idle pending entries of stream %s group %s", len(entries), self.stream, self.group)
        return await self._messages(entries)

    def _entries(self, response: Any) -> list[tuple[Any, Any]]:
        if not response:
            return []
        if isinstance(response, dict):  # RESP3
            return [entry for entries in response.values() for entry in (entries[0] if entries else [])]
        return [entry for _stream, entries in response for entry in entries]

    async def _messages(self, entries: list[tuple[Any, Any]]) -> list[Message]:
        messages: list[Message] = []
        gone: list[str] = []
        received_at = datetime.now(UTC)  # one receive: one time for its batch
        for raw_id, fields in entries:
            entry_id = _text(raw_id)
            if fields is None:
                # Trimmed (MAXLEN) or deleted after it was delivered: nothing left to deliver.
                gone.append(entry_id)
                continue
            messages.append(self._message(entry_id, fields, received_at))
        if gone:
            log.warning("stream %s: entries %s were deleted before delivery; acknowledging them", self.stream, gone)
            await self._require_client().xack(self.stream, self.group, *gone)
        return messages

    def _message(self, entry_id: str, fields: dict[Any, Any], received_at: datetime) -> Message:
        decoded = {_text(k): v for k, v in fields.items()}
        if "body" in decoded:
            raw = decoded.pop("body")
            body = raw if isinstance(raw, bytes) else str(raw).encode()
            headers = decoded  # decoded once, by Message
        else:
            body = json.dumps({k: _text(v) for k, v in decoded.items()}).encode()
            headers = {}
        metadata: dict[str, Any] = {
            "broker": "redis",
            "stream": self.stream,
            "group": self.group,
            "consumer": self.consumer,
            "message_id": entry_id,
        }
        millis, _, _seq = entry_id.partition("-")
        if millis.isdigit():
            metadata["published_at"] = millis_text(int(millis))
        return Message(
            body=body,
            dedupe_key=f"{self.stream}:{entry_id}",
            headers=headers,
            metadata=metadata,
            received_at=received_at,
            handle=entry_id,
        )

    async def ack(self, messages: list[Message]) -> None:
        if messages:
            await self._require_client().xack(self.stream, self.group, *[m.handle for m in messages])

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            # Shielded: the triggerer may be cancelled while it closes after an error, and
            # a close cut short leaves sockets open.
            await asyncio.shield(client.aclose())

    async def lag(self) -> int | None:
        """Entries pending in the group (delivered, not acknowledged) plus those not yet delivered."""
        client = self._client
        if client is None:
            return None
        for group in await client.xinfo_groups(self.stream):
            if _text(group.get("name")) == self.group:
                return int(group.get("pending") or 0) + int(group.get("lag") or 0)
        return None

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "url": shown_url(self.url, stream=self.stream, group=self.group),
            "broker": "redis",
            "stream": self.stream,
            "group": self.group,
            "block_ms": self.block_ms,
            "claim_idle_ms": self.claim_idle_ms,
            "start_id": self.start_id,
        }
        if self._consumer_given:
            described["consumer"] = self.consumer
        return described

    def _require_client(self) -> aioredis.Redis:
        if self._client is None:
            raise ConnectionError("the Redis stream trigger is not open")
        return self._client


# -- publishing ----------------------------------------------------------------------------


class RedisStreamPublisher(BrokerPublisher):
    """XADDs entries `{"body": body, **headers}` through one client per server (`maxlen=N` trims, approximately)."""

    options_class = RedisStreamOptions

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._client: aioredis.Redis | None = None

    async def open(self) -> None:
        self._client = aioredis.Redis.from_url(self.pool_key(self.url))

    async def publish(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        options: RedisStreamOptions = self.parse(url).options
        stream = options.stream
        if not stream:
            raise ValueError(f"{mask_url(url)!r} names no stream: add ?stream=NAME")
        fields: dict[Any, Any] = {"body": body}
        for name, value in headers.items():
            if name == "body":
                raise ValueError("a Redis stream entry's 'body' field holds the body; rename that header")
            fields[name] = value
        assert self._client is not None
        await self._client.xadd(stream, fields, maxlen=options.maxlen, approximate=True)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
