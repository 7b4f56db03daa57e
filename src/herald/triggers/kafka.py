"""`kafka://HOST:PORT[,HOST:PORT]/TOPIC[,TOPIC2]?group_id=G`: Apache Kafka consumer groups.

The trigger is a member of consumer group `G` with auto-commit off. An offset
is committed only in `ack`, after the triggerer committed the events, so a
crash at any instant loses nothing; what was stored but not committed comes
back and is dropped by its dedupe key, `TOPIC:PARTITION:OFFSET`.

On a rebalance, the offsets of a batch received before its partition was
revoked are not committed: the partition's new owner starts from the last
committed offset and the dedupe key absorbs the redelivery.

Options, in the URL's query string or as keyword arguments:

- `group_id` (default `herald`), `auto_offset_reset` (default `earliest`: a new
  group reads a topic from its start), `client_id` (default `herald`);
- `poll_timeout`: seconds a `receive` waits for a message before returning an
  empty batch (default 5; it returns as soon as a message is there);
- `session_timeout_ms`, `heartbeat_interval_ms`, `max_poll_interval_ms`,
  `fetch_max_wait_ms`: passed to the consumer;
- `security_protocol` (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`; default
  `SASL_SSL` when the URL has a user name, else `PLAINTEXT`) and
  `sasl_mechanism` (default `PLAIN`), with `kafka://USER:PASSWORD@HOST:PORT/...`;
- for `publish` only: `key` (the message key) and `acks` (default `all`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from herald.triggers.base import BaseEventTrigger, Message
from herald.triggers.urls import query_options, with_connection

log = logging.getLogger("herald.triggers.kafka")

#: consumer options and their types; anything else in a trigger's options is a mistake
CONSUMER_OPTIONS: dict[str, type] = {
    "group_id": str,
    "auto_offset_reset": str,
    "client_id": str,
    "poll_timeout": float,
    "session_timeout_ms": int,
    "heartbeat_interval_ms": int,
    "max_poll_interval_ms": int,
    "fetch_max_wait_ms": int,
    "security_protocol": str,
    "sasl_mechanism": str,
}
#: options only the publisher reads; a trigger accepts and ignores them, so one URL serves both
PUBLISH_OPTIONS: dict[str, type] = {"key": str, "acks": str}
DEFAULT_GROUP_ID = "herald"
DEFAULT_POLL_TIMEOUT = 5.0
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


class KafkaUrl:
    """The parts of a `kafka://` URL: servers, topics, credentials and query options."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "kafka":
            raise ValueError(f"{url!r} is not a Kafka URL: expected kafka://HOST:PORT/TOPIC?group_id=G")
        credentials, _, hosts = parts.netloc.rpartition("@")
        user, _, password = credentials.partition(":")
        self.username = unquote(user) or None
        self.password = unquote(password) or None
        self.bootstrap = hosts
        self.topics = [t for t in (unquote(p).strip() for p in parts.path.strip("/").split(",")) if t]
        if not self.bootstrap:
            raise ValueError(f"{url!r} names no Kafka server: expected kafka://HOST:PORT/TOPIC")
        if not self.topics:
            raise ValueError(f"{url!r} names no topic: expected kafka://HOST:PORT/TOPIC[,TOPIC2]")
        self.options: dict[str, str] = query_options(url)
        masked_netloc = f"{user}:***@{hosts}" if self.password else parts.netloc
        self.masked = urlunsplit((parts.scheme, masked_netloc, parts.path, parts.query, ""))

    def security(self) -> dict[str, Any]:
        """aiokafka's security arguments for this URL's credentials and options."""
        return security_args(self.username, self.password, self.options)


def security_args(username: str | None, password: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """aiokafka's security arguments: TLS and SASL from the credentials and options."""
    default = "SASL_SSL" if username else "PLAINTEXT"
    protocol = str(options.get("security_protocol") or default).upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise ValueError(f"security_protocol {protocol!r} is not one of {', '.join(SECURITY_PROTOCOLS)}")
    args: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        args["ssl_context"] = create_ssl_context()
    if protocol.startswith("SASL"):
        args["sasl_mechanism"] = str(options.get("sasl_mechanism") or "PLAIN").upper()
        args["sasl_plain_username"] = username
        args["sasl_plain_password"] = password
    return args


def _typed(options: dict[str, Any], known: dict[str, type], where: str) -> dict[str, Any]:
    typed: dict[str, Any] = {}
    for name, value in options.items():
        if name not in known:
            raise TypeError(f"unknown Kafka option {name!r} in {where}; known: {', '.join(sorted(known))}")
        try:
            typed[name] = known[name](value) if value is not None else None
        except ValueError:
            raise ValueError(f"Kafka option {name}={value!r} is not a valid {known[name].__name__}") from None
    return typed


def _text(value: bytes | None) -> str:
    """A header value as text: UTF-8, else base64 (headers are str -> str in Herald)."""
    if value is None:
        return ""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii")


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    """Counts, per partition, how often it was taken away: a batch from an older count is stale."""

    def __init__(self) -> None:
        self.epochs: dict[TopicPartition, int] = {}

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # Deliberately no commit here: the batches in flight may not be stored yet.
        for tp in revoked:
            self.epochs[tp] = self.epochs.get(tp, 0) + 1

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        pass


class KafkaTrigger(BaseEventTrigger):
    """Consumes one or more Kafka topics as a member of a consumer group.

    Args:
        bootstrap: `HOST:PORT[,HOST:PORT]` of the brokers to start from.
        topics: the topics to consume.
        username: SASL user name, if any.
        password: SASL password, if any.
        **options: consumer options (see the module's documentation), then
            `apply_function`, `filter` and `max_payload_bytes`.
    """

    scheme = "kafka"

    def __init__(
        self,
        bootstrap: str,
        topics: list[str],
        *,
        username: str | None = None,
        password: str | None = None,
        apply_function: Any = None,
        filter: str | None = None,
        max_payload_bytes: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(apply_function=apply_function, filter=filter, max_payload_bytes=max_payload_bytes)
        for name in PUBLISH_OPTIONS:  # one URL serves the publisher and the trigger
            options.pop(name, None)
        self.options = _typed(options, CONSUMER_OPTIONS, "the trigger's options")
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.group_id: str = self.options.pop("group_id", None) or DEFAULT_GROUP_ID
        self.auto_offset_reset: str = self.options.pop("auto_offset_reset", None) or "earliest"
        if self.auto_offset_reset not in ("earliest", "latest", "none"):
            raise ValueError(f"auto_offset_reset must be earliest, latest or none, not {self.auto_offset_reset!r}")
        self.poll_timeout: float = self.options.pop("poll_timeout", None) or DEFAULT_POLL_TIMEOUT
        self.username = username
        self._security = security_args(username, password, self.options)  # validated before any connection
        self._consumer: AIOKafkaConsumer | None = None
        self._revocations = _Revocations()

    @classmethod
    def from_url(cls, url: str, conn_id: str | None = None, **options: Any) -> KafkaTrigger:
        """`kafka://HOST:PORT[,HOST:PORT]/TOPIC[,TOPIC2]?group_id=G`; keyword options win over the query."""
        full = with_connection(url, conn_id)
        parsed = KafkaUrl(full)
        _typed(parsed.options, {**CONSUMER_OPTIONS, **PUBLISH_OPTIONS}, f"the URL {parsed.masked!r}")
        return cls(
            parsed.bootstrap,
            parsed.topics,
            username=parsed.username,
            password=parsed.password,
            **{**parsed.options, **options},
        )

    # -- the broker side ---------------------------------------------------------------

    async def open(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            client_id=self.options.get("client_id") or "herald",
            enable_auto_commit=False,
            auto_offset_reset=self.auto_offset_reset,
            **{k: v for k, v in self.options.items() if k not in ("client_id", "security_protocol", "sasl_mechanism")},
            **self._security,
        )
        self._revocations = _Revocations()
        consumer.subscribe(self.topics, listener=self._revocations)
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer

    async def receive(self, max_messages: int) -> list[Message]:
        consumer = self._require_consumer()
        batches = await consumer.getmany(timeout_ms=int(self.poll_timeout * 1000), max_records=max_messages)
        messages: list[Message] = []
        for tp, records in batches.items():
            epoch = self._revocations.epochs.get(tp, 0)
            messages.extend(self._message(tp, record, epoch) for record in records)
        return messages

    def _message(self, tp: TopicPartition, record: Any, epoch: int) -> Message:
        metadata: dict[str, Any] = {
            "broker": "kafka",
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "group_id": self.group_id,
        }
        if record.timestamp is not None and record.timestamp >= 0:
            metadata["published_at"] = datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat()
        return Message(
            body=record.value if record.value is not None else b"",
            dedupe_key=f"{record.topic}:{record.partition}:{record.offset}",
            key=record.key,
            headers={name: _text(value) for name, value in (record.headers or ())},
            metadata=metadata,
            handle=(tp, record.offset, epoch),
        )

    async def ack(self, messages: list[Message]) -> None:
        """Commit, per partition, the highest acknowledged offset + 1.

        Skips partitions revoked since the batch was received: their new owner
        re-reads from the last committed offset and the dedupe key drops the repeats.
        """
        consumer = self._require_consumer()
        assigned = consumer.assignment()
        offsets: dict[TopicPartition, int] = {}
        for message in messages:
            tp, offset, epoch = message.handle
            if tp not in assigned or self._revocations.epochs.get(tp, 0) != epoch:
                continue
            offsets[tp] = max(offsets.get(tp, -1), offset + 1)
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance started during the commit: the stored messages come back to
            # whoever owns the partition now, and are deduped there.
            log.info("kafka group %s: offsets not committed after a rebalance (%s)", self.group_id, exc)

    async def close(self) -> None:
        """Leave the group without committing: unacknowledged messages are read again."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def lag(self) -> int | None:
        """Messages behind the end of the assigned partitions: end offset - committed offset."""
        consumer = self._consumer
        if consumer is None:
            return None
        partitions = list(consumer.assignment())
        if not partitions:
            return 0
        ends = await consumer.end_offsets(partitions)
        starts: dict[TopicPartition, int] | None = None
        total = 0
        for tp in partitions:
            committed = await consumer.committed(tp)
            if committed is None:
                if starts is None:
                    starts = await consumer.beginning_offsets(partitions)
                committed = starts[tp] if self.auto_offset_reset == "earliest" else ends[tp]
            total += max(0, ends[tp] - committed)
        return total

    def describe(self) -> dict[str, Any]:
        user = f"{self.username}:***@" if self.username else ""
        described: dict[str, Any] = {
            "url": f"kafka://{user}{self.bootstrap}/{','.join(self.topics)}?group_id={self.group_id}",
            "broker": "kafka",
            "topics": self.topics,
            "group_id": self.group_id,
            "auto_offset_reset": self.auto_offset_reset,
            "poll_timeout": self.poll_timeout,
        }
        described.update(self.options)
        return described

    def _require_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the Kafka trigger is not open")
        return self._consumer


#: one started producer per (connection URL), with the event loop it belongs to
_producers: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Task[AIOKafkaProducer]]] = {}


async def _start_producer(parsed: KafkaUrl, acks: str) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(
        bootstrap_servers=parsed.bootstrap,
        client_id="herald",
        acks=int(acks) if acks.lstrip("-").isdigit() else acks,
        **parsed.security(),
    )
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    return producer


async def _producer(parsed: KafkaUrl) -> AIOKafkaProducer:
    acks = parsed.options.get("acks", "all")
    cache_key = f"{parsed.username}@{parsed.bootstrap}?{parsed.options.get('security_protocol')}&acks={acks}"
    loop = asyncio.get_running_loop()
    cached = _producers.get(cache_key)
    if cached is None or cached[0] is not loop:
        # A task, so that concurrent first calls share one connection.
        cached = (loop, loop.create_task(_start_producer(parsed, acks)))
        _producers[cache_key] = cached
    try:
        return await asyncio.shield(cached[1])
    except Exception:
        if _producers.get(cache_key) is cached:
            del _producers[cache_key]
        raise


async def publish(url: str, body: bytes, headers: dict[str, str] | None = None) -> None:
    """Send one message to the topic of `kafka://HOST:PORT/TOPIC[?key=K]` and wait for the broker's ack."""
    parsed = KafkaUrl(url)
    _typed(parsed.options, {**CONSUMER_OPTIONS, **PUBLISH_OPTIONS}, f"the URL {parsed.masked!r}")
    if len(parsed.topics) != 1:
        raise ValueError(f"publish needs exactly one topic in {parsed.masked!r}, not {len(parsed.topics)}")
    producer = await _producer(parsed)
    key = parsed.options.get("key")
    await producer.send_and_wait(
        parsed.topics[0],
        body,
        key=key.encode("utf-8") if key is not None else None,
        headers=[(name, value.encode("utf-8")) for name, value in (headers or {}).items()] or None,
    )


async def close_publishers() -> None:
    """Stop the producers of the running event loop (tests, shutdown)."""
    loop = asyncio.get_running_loop()
    for cache_key, (owner, task) in list(_producers.items()):
        if owner is loop:
            del _producers[cache_key]
            if task.done() and task.exception() is None:
                await task.result().stop()
