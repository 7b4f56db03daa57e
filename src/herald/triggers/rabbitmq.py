"""`amqp://USER:PASS@HOST:PORT/VHOST?queue=Q`: a RabbitMQ queue, through aio-pika.

Options (query string, or keyword arguments of `RabbitMQTrigger`):

- `queue` (required): the queue to consume.
- `prefetch` (default 500): the channel's QoS, the most unacknowledged messages
  the broker hands this consumer at once, so the most one `receive` returns.
- `declare` (default true): declare the queue as durable (created if missing);
  `false` uses an existing queue as it is (a passive declare), for queues
  declared elsewhere with arguments of their own (quorum queues, TTLs...).
- `dedupe` (default `message_id`): see "Dedupe key" below; `body` adds a hash
  of the body for messages without a `message_id`.
- `exchange` and `routing_key` (publishing only): where `publish` sends; by
  default the default exchange with the queue's name as routing key.

Delivery: messages are consumed with manual acknowledgement and a basic.ack is
sent by `ack`, after the triggerer's commit, for exactly the messages given.
Closing the connection (a crash, a lost connection) returns every unacknowledged
message to the queue, flagged `redelivered`.

Dedupe key: AMQP gives a delivery no identity that survives redelivery, except
the `message_id` property that the publisher sets (Herald's publisher always
does, with a UUID). So the key is `queue + message_id` when there is one. For a
message without it there is no safe key: a hash of the body would merge two
distinct messages that happen to be identical (two `{"refresh": true}`), losing
the second forever. Such messages get a key unique to the delivery instead: they
are never lost, but a crash between the commit and the ack turns them into a
second event (at least once; `extra["message"]["redelivered"]` is true on it).
`dedupe=body` chooses the other trade-off for publishers whose bodies are
unique by construction (they carry their own ids): the key is then the queue
plus a SHA-256 of the body, and identical bodies make one event.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from herald.triggers.base import (
    BaseEventTrigger,
    BrokerOptions,
    BrokerPublisher,
    Message,
    normalize_headers,
    parse_options,
)
from herald.triggers.urls import mask_url, shown_url

DEFAULT_PREFETCH = 500
#: how long one `receive` waits for a first message before returning [] (a long poll)
WAIT_SECONDS = 20.0
DEDUPE_MODES = ("message_id", "body")


@dataclass(frozen=True)
class RabbitMQOptions(BrokerOptions):
    """The options of a RabbitMQ trigger and publisher (URL query or keyword arguments).

    Query options that are not these are aio-pika's (`heartbeat`...) and stay in the URL.

    Attributes:
        queue: the queue to consume (and, by default, to publish to).
        prefetch: the most unacknowledged messages at once.
        declare: declare the queue durable (default), or use an existing one as it is.
        dedupe: `message_id` (default) or `body`; see the module's documentation.
        exchange: the publisher's exchange (default: the default exchange).
        routing_key: the publisher's routing key (default: the queue's name).
    """

    queue: str = ""
    prefetch: int = DEFAULT_PREFETCH
    declare: bool = True
    dedupe: str = "message_id"
    exchange: str = ""
    routing_key: str | None = None

    BROKER: ClassVar[str] = "RabbitMQ"
    PASSTHROUGH_QUERY: ClassVar[bool] = True


def connection_url(url: str) -> str:
    """The broker's URL without Herald's own query options: what aio-pika connects to."""
    return parse_options(RabbitMQOptions, url, {}).url


class _Closed:
    """Put in the buffer when the channel or the connection closes, to wake `receive`."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class RabbitMQTrigger(BaseEventTrigger):
    """Consumes a RabbitMQ queue; acknowledges each message after its event is committed.

    Args:
        url: `amqp://USER:PASS@HOST:PORT/VHOST` (vhost `/` is `%2F`; `amqps://` for TLS),
            optionally with the options below in its query string.
        queue: the queue to consume (else the URL's `queue` option).
        prefetch: the most unacknowledged messages at once (default 500).
        declare: declare the queue durable (default), or use an existing one as it is.
        dedupe: `message_id` (default) or `body`; see the module's documentation.
        **options: `apply_function`, `filter`, `max_payload_bytes`.
    """

    scheme = "amqp"
    #: competing consumers: the broker hands each message to one channel until it is acked
    shareable = True

    def __init__(self, url: str, **options: Any) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps"):
            raise ValueError(
                f"{mask_url(url)!r} is not a RabbitMQ URL: expected amqp://USER:PASS@HOST:PORT/VHOST?queue=Q"
            )
        parsed = parse_options(RabbitMQOptions, url, options)
        super().__init__(**parsed.common)
        o = parsed.options
        self.options = o
        self.url = parsed.url
        self.queue = o.queue
        if not self.queue:
            raise ValueError(f"{mask_url(url)!r} names no queue: add ?queue=NAME")
        self.prefetch = o.prefetch
        if self.prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {self.prefetch}")
        self.declare = o.declare
        self.dedupe = o.dedupe
        if self.dedupe not in DEDUPE_MODES:
            raise ValueError(f"dedupe={self.dedupe!r}: expected one of {', '.join(DEDUPE_MODES)}")
        parts = urlsplit(self.url)
        self.vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._buffer: asyncio.Queue[AbstractIncomingMessage | _Closed] | None = None
        #: the highest delivery tag acknowledged on the current channel (tags count from 1)
        self._acked_through = 0

    # -- the broker side ---------------------------------------------------------------

    async def open(self) -> None:
        await self.close()
        buffer: asyncio.Queue[AbstractIncomingMessage | _Closed] = asyncio.Queue()

        def closed(_sender: Any, error: BaseException | None = None, *_: Any) -> None:
            buffer.put_nowait(_Closed(error))

        async def deliver(message: AbstractIncomingMessage) -> None:
            buffer.put_nowait(message)

        connection = await aio_pika.connect(
            connection_url(self.url), client_properties={"connection_name": f"herald {self.queue}"}
        )
        try:
            connection.close_callbacks.add(closed)
            channel = await connection.channel()
            channel.close_callbacks.add(closed)
            await channel.set_qos(prefetch_count=self.prefetch)
            queue = await self._declare(channel)
            # The broker cancels the consumer when the queue is deleted: reconnect
            # (and declare it again, or report it missing) rather than wait forever.
            underlay = await channel.get_underlay_channel()
            underlay.on_consumer_cancel_callbacks.add(
                lambda _frame: closed(None, ConnectionError(f"the broker cancelled the consumer of {self.queue!r}"))
            )
            await queue.consume(deliver, no_ack=False)
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        self._connection, self._channel, self._buffer = connection, channel, buffer
        self._acked_through = 0

    async def _declare(self, channel: AbstractChannel) -> AbstractQueue:
        if self.declare:
            return await channel.declare_queue(self.queue, durable=True)
        return await channel.declare_queue(self.queue, passive=True)

    async def receive(self, max_messages: int) -> list[Message]:
        buffer = self._buffer
        if buffer is None:
            raise ConnectionError("the RabbitMQ trigger is not open")
        try:
            first = await asyncio.wait_for(buffer.get(), WAIT_SECONDS)
        except TimeoutError:
            return []
        items = [first]
        # Take what has already arrived, without waiting for more.
        while len(items) < max_messages and not buffer.empty() and not isinstance(items[-1], _Closed):
            items.append(buffer.get_nowait())
        if isinstance(items[-1], _Closed):
            error = items[-1].error
            raise ConnectionError(f"RabbitMQ connection to queue {self.queue!r} closed: {error}") from error
        return [self._message(item) for item in items if not isinstance(item, _Closed)]

    def _message(self, delivery: AbstractIncomingMessage) -> Message:
        headers = normalize_headers(delivery.headers)
        metadata: dict[str, Any] = {
            "broker": "rabbitmq",
            "queue": self.queue,
            "vhost": self.vhost,
            "exchange": delivery.exchange,
            "routing_key": delivery.routing_key,
            "redelivered": bool(delivery.redelivered),
        }
        if delivery.message_id:
            metadata["message_id"] = delivery.message_id
            dedupe_key = f"{self.queue}|{delivery.message_id}"
        elif self.dedupe == "body":
            dedupe_key = f"{self.queue}|sha256:{hashlib.sha256(delivery.body).hexdigest()}"
        else:
            dedupe_key = f"{self.queue}|delivery:{uuid.uuid4().hex}"
        for name in ("correlation_id", "app_id", "content_type", "type"):
            value = getattr(delivery, name, None)
            if value:
                metadata[name] = value
        if delivery.timestamp is not None:
            stamp = delivery.timestamp
            metadata["published_at"] = (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).isoformat()
        return Message(
            body=bytes(delivery.body),
            dedupe_key=dedupe_key,
            headers=headers,
            metadata=metadata,
            handle=_Handle(delivery, self._channel),
        )

    async def ack(self, messages: list[Message]) -> None:
        handles = sorted((m.handle for m in messages), key=lambda h: h.tag)
        current = [h for h in handles if h.channel is self._channel]
        if not current:
            return
        # Messages from a channel that has since closed were requeued by the broker;
        # acking them on another channel would close it (unknown delivery tag).
        tags = [h.tag for h in current]
        if tags == list(range(self._acked_through + 1, self._acked_through + 1 + len(tags))):
            # The batch is every delivery since the last ack: one frame acks them all.
            await current[-1].delivery.ack(multiple=True)
        else:
            for handle in current:
                await handle.delivery.ack()
        self._acked_through = max(self._acked_through, tags[-1])

    async def close(self) -> None:
        connection, self._connection, self._channel, self._buffer = self._connection, None, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def lag(self) -> int | None:
        """Messages ready in the queue (not counting those delivered and not yet acknowledged)."""
        connection = self._connection
        if connection is None or connection.is_closed:
            return None
        # A channel of its own: a failed passive declare closes the channel it runs on.
        async with connection.channel() as channel:
            queue = await channel.declare_queue(self.queue, passive=True)
            count = queue.declaration_result.message_count
            return int(count) if count is not None else None

    def describe(self) -> dict[str, Any]:
        return {
            "url": shown_url(self.url, queue=self.queue),
            "broker": "rabbitmq",
            "queue": self.queue,
            "vhost": self.vhost,
            "prefetch": self.prefetch,
            "declare": self.declare,
            "dedupe": self.dedupe,
        }


@dataclass
class _Handle:
    """What `ack` needs: the delivery and the channel it came on."""

    delivery: AbstractIncomingMessage
    channel: AbstractChannel | None
    tag: int = field(init=False)

    def __post_init__(self) -> None:
        self.tag = int(self.delivery.delivery_tag or 0)


# -- publishing ------------------------------------------------------------------------


class RabbitMQPublisher(BrokerPublisher):
    """Sends persistent messages on one confirming channel per broker URL and waits for the confirm.

    Goes to the URL's `exchange` (default: the default exchange) with its
    `routing_key` (default: the queue's name). Through the default exchange the
    queue is declared first (durable) unless `declare=false`, so publishing
    before any watcher has started does not lose the message. An unroutable
    message raises instead of vanishing. Each message gets a UUID `message_id`,
    the dedupe key of the watcher that receives it.
    """

    options_class = RabbitMQOptions

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._declared: set[str] = set()

    @property
    def is_open(self) -> bool:
        return self._channel is not None and not self._channel.is_closed

    async def open(self) -> None:
        connection = await aio_pika.connect(
            self.pool_key(self.url), client_properties={"connection_name": "herald publisher"}
        )
        # on_return_raises: an unroutable message raises PublishError instead of vanishing
        self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        self._connection = connection

    async def publish(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        options: RabbitMQOptions = self.parse(url).options
        exchange_name = options.exchange
        routing_key = options.queue if options.routing_key is None else options.routing_key
        if not exchange_name and not routing_key:
            raise ValueError(f"{mask_url(url)!r} names no queue, exchange or routing_key to publish to")
        channel = self._channel
        assert channel is not None
        if not exchange_name and options.declare and routing_key not in self._declared:
            await channel.declare_queue(routing_key, durable=True)
            self._declared.add(routing_key)
        exchange = (
            await channel.get_exchange(exchange_name, ensure=False) if exchange_name else channel.default_exchange
        )
        message = aio_pika.Message(
            body=body,
            headers=dict(headers),
            message_id=uuid.uuid4().hex,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            timestamp=datetime.now(UTC),
        )
        await exchange.publish(message, routing_key=routing_key, mandatory=True)

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()
