"""`nats://HOST:PORT/SUBJECT?stream=S&durable=D`: NATS JetStream through a durable pull consumer.

The stream (file storage, capturing SUBJECT) and the durable consumer (explicit
acks) are created when missing. A pull `fetch` with a timeout is the long poll;
each message is acknowledged only after its event is committed. A message not
acknowledged within `ack_wait` seconds is redelivered by the server with the
same stream sequence, which is the dedupe key, so it never becomes a second
event; `close()` naks what it still holds so that this happens at once.

The connection does not reconnect by itself: a lost connection ends the fetch
with an error, the triggerer shows it on the watcher and reopens with back-off
(a new connection, the same durable consumer, nothing lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StorageType

from herald.triggers.base import (
    BaseEventTrigger,
    BrokerOptions,
    BrokerPublisher,
    Message,
    normalize_headers,
    parse_options,
)
from herald.triggers.urls import mask_url, shown_url

log = logging.getLogger("herald.triggers.nats")

DEFAULT_DURABLE = "herald"
DEFAULT_ACK_WAIT = 30.0
DEFAULT_FETCH_TIMEOUT = 5.0
#: messages asked for in one pull request
MAX_BATCH = 256


@dataclass(frozen=True)
class NatsOptions(BrokerOptions):
    """The options of a NATS JetStream trigger and publisher (URL query or keyword arguments).

    Attributes:
        stream: the stream name (default: the subject with `.`, `*`, `>` as `_`).
        durable: the durable consumer's name; triggerers sharing it share the messages.
        ack_wait: seconds before an unacknowledged message is redelivered
            (used when the consumer is created).
        fetch_timeout: seconds one pull waits for messages (the long poll).
    """

    stream: str | None = None
    durable: str = DEFAULT_DURABLE
    ack_wait: float = DEFAULT_ACK_WAIT
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT

    BROKER: ClassVar[str] = "NATS"


def _parse(url: str, options: dict[str, Any]) -> tuple[str, str, NatsOptions, dict[str, Any]]:
    """`(server URL with credentials, subject, options, common trigger options)` of a `nats://` URL."""
    parsed = parse_options(NatsOptions, url, options)
    parts = urlsplit(parsed.url)
    subject = unquote(parts.path.lstrip("/"))
    if parts.scheme != "nats" or not parts.hostname or not subject:
        raise ValueError(f"{mask_url(url)!r} is not a NATS URL: expected nats://HOST:PORT/SUBJECT?stream=S&durable=D")
    return f"nats://{parts.netloc}", subject, parsed.options, parsed.common


def default_stream_name(subject: str) -> str:
    """A stream name made from the subject (`orders.new` -> `orders_new`)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", subject)


async def _ensure_stream(js: JetStreamContext, stream: str, subject: str) -> None:
    """Create `stream` (file storage, capturing `subject`) unless it exists."""
    try:
        await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(name=stream, subjects=[subject], storage=StorageType.FILE)
        except nats.js.errors.BadRequestError:
            await js.stream_info(stream)  # created meanwhile by another process: fine if it exists now


class NatsTrigger(BaseEventTrigger):
    """Consumes a JetStream subject through a durable pull consumer.

    Args:
        server: `nats://[USER:PASSWORD@|TOKEN@]HOST:PORT`.
        subject: the subject (wildcards allowed) the stream captures and the
            consumer filters on.
        stream: the stream name (default: the subject with `.`, `*`, `>` as `_`).
        durable: the durable consumer's name; triggerers sharing it share the messages.
        ack_wait: seconds before an unacknowledged message is redelivered
            (used when the consumer is created).
        fetch_timeout: seconds one pull waits for messages (the long poll).
    """

    scheme = "nats"
    #: a durable pull consumer hands each message to one fetch until it is acked
    shareable = True

    def __init__(self, url: str, **options: Any) -> None:
        server, subject, o, common = _parse(url, options)
        super().__init__(**common)
        self.options = o
        self.server = server
        self.subject = subject
        self.stream = o.stream or default_stream_name(subject)
        self.durable = o.durable
        self.ack_wait = o.ack_wait
        self.fetch_timeout = o.fetch_timeout
        self._nc: Client | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        #: messages received and not acknowledged yet, by stream sequence (nak'd on close)
        self._held: dict[int, Msg] = {}

    @property
    def client_name(self) -> str:
        """The connection name the server shows for this trigger."""
        return f"herald:{self.stream}:{self.durable}"

    async def open(self) -> None:
        self._held = {}
        self._nc = await nats.connect(
            servers=[self.server],
            name=self.client_name,
            allow_reconnect=False,
            connect_timeout=5,
            error_cb=self._on_error,
        )
        js = self._nc.jetstream()
        await _ensure_stream(js, self.stream, self.subject)
        config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=self.ack_wait)
        self._sub = await js.pull_subscribe(self.subject, durable=self.durable, stream=self.stream, config=config)

    async def _on_error(self, exc: Exception) -> None:
        # The failure itself reaches the triggerer through the next fetch or ack.
        log.debug("NATS connection of %s: %s", self.client_name, exc)

    async def receive(self, max_messages: int) -> list[Message]:
        sub = self._sub
        if sub is None or self._nc is None or self._nc.is_closed:
            raise ConnectionError(f"the NATS connection to {mask_url(self.server)} is closed")
        try:
            msgs = await sub.fetch(min(max_messages, MAX_BATCH), timeout=self.fetch_timeout)
        except TimeoutError:  # nats.errors.TimeoutError is one too
            # nats-py raises its own TimeoutError, and a bare one when a fetch's deadline
            # ran out before its second pull request: both mean "nothing arrived".
            if self._nc.is_closed:
                raise ConnectionError(f"the NATS connection to {mask_url(self.server)} was lost") from None
            return []
        except asyncio.CancelledError:
            # nats-py cancels pending fetches when the connection closes: that is a lost
            # connection, not this task being cancelled, and must not end the watcher.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            raise ConnectionError(f"the NATS connection to {mask_url(self.server)} was lost") from None
        messages = []
        for msg in msgs:
            message = self._message(msg)
            self._held[message.metadata["sequence"]] = msg
            messages.append(message)
        return messages

    def _message(self, msg: Msg) -> Message:
        meta = msg.metadata
        sequence = int(meta.sequence.stream)
        headers = normalize_headers(msg.headers)
        metadata: dict[str, Any] = {
            "broker": "nats",
            "stream": meta.stream,
            "consumer": meta.consumer,
            "subject": msg.subject,
            "sequence": sequence,
            "delivered": int(meta.num_delivered or 1),
        }
        if "Nats-Msg-Id" in headers:
            metadata["message_id"] = headers["Nats-Msg-Id"]
        if meta.timestamp is not None:
            metadata["published_at"] = meta.timestamp.isoformat()
        return Message(
            body=bytes(msg.data), dedupe_key=f"{self.stream}:{sequence}", headers=headers, metadata=metadata, handle=msg
        )

    async def ack(self, messages: list[Message]) -> None:
        if not messages:
            return
        nc = self._nc
        if nc is None or nc.is_closed:
            raise ConnectionError("the NATS connection closed before the acknowledgement")
        for message in messages:
            await message.handle.ack()
            self._held.pop(message.metadata["sequence"], None)
        # ack() only buffers; the flush makes a lost connection show here, not later.
        await nc.flush(timeout=10)

    async def close(self) -> None:
        nc, self._nc, self._sub = self._nc, None, None
        held, self._held = self._held, {}
        if nc is None:
            return
        if not nc.is_closed:
            # Unacknowledged messages come back at once rather than after ack_wait.
            with contextlib.suppress(Exception):
                for msg in held.values():
                    await msg.nak()
                await nc.flush(timeout=2)
        with contextlib.suppress(Exception):
            await nc.close()

    async def lag(self) -> int | None:
        """Messages not yet delivered to the consumer plus those delivered and not acknowledged."""
        sub = self._sub
        if sub is None:
            return None
        info = await sub.consumer_info()
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    def describe(self) -> dict[str, Any]:
        return {
            "url": shown_url(f"{self.server}/{self.subject}", stream=self.stream),
            "broker": "nats",
            "subject": self.subject,
            "stream": self.stream,
            "durable": self.durable,
            "ack_wait": self.ack_wait,
            "fetch_timeout": self.fetch_timeout,
        }


# -- publishing ----------------------------------------------------------------------------


class NatsPublisher(BrokerPublisher):
    """Publishes through JetStream on one connection per server and waits for the stream's acknowledgement.

    With `?stream=S`, a missing stream is created (file storage) as the trigger would.
    """

    options_class = NatsOptions

    @classmethod
    def pool_key(cls, url: str) -> str:
        return _parse(url, {})[0]

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._nc: Client | None = None

    async def open(self) -> None:
        self._nc = await nats.connect(servers=[self.pool_key(self.url)], name="herald-publisher")

    async def publish(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        _server, subject, options, _common = _parse(url, {})
        assert self._nc is not None
        js = self._nc.jetstream()
        try:
            await js.publish(subject, body, headers=dict(headers) if headers else None)
        except (nats.js.errors.NoStreamResponseError, nats.errors.NoRespondersError):
            if not options.stream:
                raise
            await _ensure_stream(js, options.stream, subject)
            await js.publish(subject, body, headers=dict(headers) if headers else None)

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await nc.close()
