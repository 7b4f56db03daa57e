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
- `client`: `aiokafka` (the default, the `kafka` extra) or `confluent`
  (confluent-kafka, installed separately); `api_version`: the broker's version
  when it cannot be asked, which brokers before 0.10 cannot: `api_version=0.9`
  selects confluent-kafka, the only one of the two that speaks to them
  (without headers, which Kafka 0.9 does not have);
- for `publish` only: `key` (the message key) and `acks` (default `all`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol
from urllib.parse import unquote, urlsplit

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from herald.triggers.base import (
    BaseEventTrigger,
    BrokerOptions,
    Message,
    Publisher,
    millis_text,
    normalize_headers,
    parse_options,
)
from herald.triggers.urls import mask_url

log = logging.getLogger("herald.triggers.kafka")

#: options that say how to reach the cluster (the trigger's and the publisher's)
CLIENT_OPTIONS = ("client_id", "security_protocol", "sasl_mechanism", "client", "api_version")
DEFAULT_GROUP_ID = "herald"
DEFAULT_POLL_TIMEOUT = 5.0
DEFAULT_FETCH_MAX_WAIT_MS = 50
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
CLIENTS = ("aiokafka", "confluent")

#: (topic, partition)
Partition = tuple[str, int]


@dataclass(frozen=True)
class KafkaOptions(BrokerOptions):
    """The options of a Kafka trigger and publisher (URL query or keyword arguments).

    Attributes:
        client_id: the client id the brokers see (default `herald`).
        security_protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (default:
            SASL_SSL with a user name, else PLAINTEXT).
        sasl_mechanism: PLAIN (default), SCRAM-SHA-256...
        client: `aiokafka` (default) or `confluent` (confluent-kafka, for brokers older than 0.10).
        api_version: the brokers' version, when they cannot tell it.
        group_id: the consumer group (default `herald`).
        auto_offset_reset: where a new group starts: earliest (default), latest or none.
        poll_timeout: seconds one fetch waits for records (the long poll).
        session_timeout_ms, heartbeat_interval_ms, max_poll_interval_ms, fetch_max_wait_ms:
            the consumer settings of the same names.
        key: the publisher's message key.
        acks: the publisher's `acks` (default `all`).
    """

    client_id: str | None = None
    security_protocol: str | None = None
    sasl_mechanism: str | None = None
    client: str | None = None
    api_version: str | None = None
    group_id: str | None = None
    auto_offset_reset: str | None = None
    poll_timeout: float | None = None
    session_timeout_ms: int | None = None
    heartbeat_interval_ms: int | None = None
    max_poll_interval_ms: int | None = None
    fetch_max_wait_ms: int | None = None
    key: str | None = None
    acks: str | None = None

    BROKER: ClassVar[str] = "Kafka"

    def given(self, *names: str) -> dict[str, Any]:
        """The options among `names` that were set."""
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


#: the consumer's own options, passed to the client library
CONSUMER_OPTIONS = (
    "auto_offset_reset",
    "session_timeout_ms",
    "heartbeat_interval_ms",
    "max_poll_interval_ms",
    "fetch_max_wait_ms",
)


class KafkaUrl:
    """The parts of a `kafka://` URL, its options parsed: servers, topics, credentials."""

    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        parsed = parse_options(KafkaOptions, url, dict(options or {}))
        parts = urlsplit(parsed.url)
        if parts.scheme != "kafka":
            raise ValueError(f"{mask_url(url)!r} is not a Kafka URL: expected kafka://HOST:PORT/TOPIC?group_id=G")
        credentials, _, hosts = parts.netloc.rpartition("@")
        user, _, password = credentials.partition(":")
        self.username = unquote(user) or None
        self.password = unquote(password) or None
        self.bootstrap = hosts
        self.topics = [t for t in (unquote(p).strip() for p in parts.path.strip("/").split(",")) if t]
        self.masked = mask_url(url)
        if not self.bootstrap:
            raise ValueError(f"{self.masked!r} names no Kafka server: expected kafka://HOST:PORT/TOPIC")
        if not self.topics:
            raise ValueError(f"{self.masked!r} names no topic: expected kafka://HOST:PORT/TOPIC[,TOPIC2]")
        self.options: KafkaOptions = parsed.options
        self.common = parsed.common


@dataclass(frozen=True)
class ClientSettings:
    """How to reach the cluster, whichever client library does it."""

    bootstrap: str
    username: str | None
    password: str | None = field(repr=False)
    security_protocol: str
    sasl_mechanism: str
    client_id: str
    client: str
    api_version: str | None

    @classmethod
    def build(
        cls, bootstrap: str, username: str | None, password: str | None, options: dict[str, Any]
    ) -> ClientSettings:
        """The settings from a URL's parts and options (validated: nothing connects yet)."""
        protocol = str(options.get("security_protocol") or ("SASL_SSL" if username else "PLAINTEXT")).upper()
        if protocol not in SECURITY_PROTOCOLS:
            raise ValueError(f"security_protocol {protocol!r} is not one of {', '.join(SECURITY_PROTOCOLS)}")
        api_version = options.get("api_version") or None
        old_broker = api_version is not None and _version(api_version) < (0, 10)
        client = str(options.get("client") or ("confluent" if old_broker else "aiokafka")).lower()
        if client not in CLIENTS:
            raise ValueError(f"client {client!r} is not one of {', '.join(CLIENTS)}")
        if client == "aiokafka" and old_broker:
            raise ValueError(f"aiokafka cannot talk to Kafka {api_version}; use client=confluent (confluent-kafka)")
        return cls(
            bootstrap=bootstrap,
            username=username,
            password=password,
            security_protocol=protocol,
            sasl_mechanism=str(options.get("sasl_mechanism") or "PLAIN").upper(),
            client_id=str(options.get("client_id") or "herald"),
            client=client,
            api_version=api_version,
        )

    def aiokafka_args(self) -> dict[str, Any]:
        """aiokafka's connection arguments."""
        args: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        if self.api_version is not None:
            args["api_version"] = self.api_version
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            args["ssl_context"] = create_ssl_context()
        if self.security_protocol.startswith("SASL"):
            args["sasl_mechanism"] = self.sasl_mechanism
            args["sasl_plain_username"] = self.username
            args["sasl_plain_password"] = self.password
        return args

    def confluent_config(self) -> dict[str, Any]:
        """librdkafka's connection properties."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        if self.api_version is not None:
            version = _version(self.api_version)
            config["api.version.request"] = version >= (0, 10)
            config["broker.version.fallback"] = ".".join(str(n) for n in (*version, 0, 0)[:3])
        if self.security_protocol.startswith("SASL"):
            config.update(
                {"sasl.mechanism": self.sasl_mechanism, "sasl.username": self.username, "sasl.password": self.password}
            )
        return config


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        raise ValueError(f"api_version {text!r} is not a version such as 0.9 or 2.8.1") from None


@dataclass
class Record:
    """One consumed record, whichever client read it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_ms: int | None


class RebalancedError(Exception):
    """A commit was refused because the group is rebalancing or moved to a new generation."""


class _Client(Protocol):
    """What the trigger needs from a consumer library."""

    #: per partition, how often it was revoked: a batch received under an older count is stale
    revocations: dict[Partition, int]

    async def start(self) -> None: ...
    async def fetch(self, max_records: int, timeout: float) -> list[Record]: ...
    def assignment(self) -> set[Partition]: ...
    async def commit(self, offsets: dict[Partition, int]) -> None: ...
    async def lag(self) -> int: ...
    async def stop(self) -> None: ...


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, counts: dict[Partition, int]) -> None:
        self.counts = counts

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # Deliberately no commit here: the batches in flight may not be stored yet.
        for tp in revoked:
            self.counts[(tp.topic, tp.partition)] = self.counts.get((tp.topic, tp.partition), 0) + 1

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        pass


class _AiokafkaClient:
    """The default: aiokafka, native asyncio (Kafka 0.10 and later)."""

    def __init__(self, settings: ClientSettings, topics: list[str], group_id: str, options: dict[str, Any]) -> None:
        self.revocations: dict[Partition, int] = {}
        self.auto_offset_reset = options["auto_offset_reset"]
        self.consumer = AIOKafkaConsumer(
            group_id=group_id,
            enable_auto_commit=False,
            **options,
            **settings.aiokafka_args(),
        )
        self.consumer.subscribe(topics, listener=_Revocations(self.revocations))

    async def start(self) -> None:
        await self.consumer.start()

    async def fetch(self, max_records: int, timeout: float) -> list[Record]:
        batches = await self.consumer.getmany(timeout_ms=int(timeout * 1000), max_records=max_records)
        return [
            Record(r.topic, r.partition, r.offset, r.key, r.value, list(r.headers or ()), r.timestamp)
            for records in batches.values()
            for r in records
        ]

    def assignment(self) -> set[Partition]:
        return {(tp.topic, tp.partition) for tp in self.consumer.assignment()}

    async def commit(self, offsets: dict[Partition, int]) -> None:
        try:
            await self.consumer.commit({TopicPartition(t, p): o for (t, p), o in offsets.items()})
        except (CommitFailedError, IllegalStateError) as exc:
            raise RebalancedError(str(exc)) from exc

    async def lag(self) -> int:
        partitions = list(self.consumer.assignment())
        if not partitions:
            return 0
        ends = await self.consumer.end_offsets(partitions)
        starts: dict[TopicPartition, int] | None = None
        total = 0
        for tp in partitions:
            committed = await self.consumer.committed(tp)
            if committed is None:
                if self.auto_offset_reset != "earliest":
                    continue
                if starts is None:
                    starts = await self.consumer.beginning_offsets(partitions)
                committed = starts[tp]
            total += max(0, ends[tp] - committed)
        return total

    async def stop(self) -> None:
        await self.consumer.stop()


class _ConfluentClient:
    """confluent-kafka (librdkafka), for brokers aiokafka cannot talk to (before 0.10).

    Its calls block, so they run in threads; one lock keeps `close` from
    running while a `consume` is still waiting in its thread.
    """

    #: librdkafka's names for the consumer options
    NAMES: ClassVar[dict[str, str]] = {
        "auto_offset_reset": "auto.offset.reset",
        "session_timeout_ms": "session.timeout.ms",
        "heartbeat_interval_ms": "heartbeat.interval.ms",
        "max_poll_interval_ms": "max.poll.interval.ms",
        "fetch_max_wait_ms": "fetch.wait.max.ms",
    }

    def __init__(self, settings: ClientSettings, topics: list[str], group_id: str, options: dict[str, Any]) -> None:
        try:
            import confluent_kafka
        except ImportError as exc:
            raise ImportError(
                "kafka:// with client=confluent (or api_version before 0.10) needs confluent-kafka: "
                "pip install confluent-kafka"
            ) from exc
        self._ck = confluent_kafka
        self.revocations: dict[Partition, int] = {}
        self.auto_offset_reset = options["auto_offset_reset"]
        config = {**settings.confluent_config(), "group.id": group_id, "enable.auto.commit": False}
        # librdkafka's own default (45 s) is above what older brokers allow (30 s).
        config["session.timeout.ms"] = 10000
        for name, value in options.items():
            if name in self.NAMES:
                config[self.NAMES[name]] = value
        self._config = config
        self._topics = topics
        self._consumer: Any = None
        self._lock = threading.Lock()

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            self.revocations[(tp.topic, tp.partition)] = self.revocations.get((tp.topic, tp.partition), 0) + 1

    async def start(self) -> None:
        self._consumer = self._ck.Consumer(self._config, logger=log)
        self._consumer.subscribe(self._topics, on_revoke=self._on_revoke)

    def _consume(self, max_records: int, timeout: float) -> list[Any]:
        with self._lock:
            if self._consumer is None:
                return []
            # consume() waits for a full batch or its timeout; poll() returns on the first
            # message, then consume(timeout=0) takes what else is already there.
            first = self._consumer.poll(timeout)
            if first is None:
                return []
            return (
                [first, *self._consumer.consume(num_messages=max_records - 1, timeout=0)]
                if max_records > 1
                else [first]
            )

    async def fetch(self, max_records: int, timeout: float) -> list[Record]:
        records: list[Record] = []
        for m in await asyncio.to_thread(self._consume, max_records, timeout):
            error = m.error()
            if error is not None:
                if error.fatal():
                    raise self._ck.KafkaException(error)
                log.debug("kafka consumer: %s", error)  # retriable: librdkafka carries on by itself
                continue
            kind, ts = m.timestamp()
            stamp = ts if kind != self._ck.TIMESTAMP_NOT_AVAILABLE else None
            records.append(
                Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(), list(m.headers() or ()), stamp)
            )
        return records

    def assignment(self) -> set[Partition]:
        if self._consumer is None:
            return set()
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    async def commit(self, offsets: dict[Partition, int]) -> None:
        ck = self._ck
        partitions = [ck.TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            await asyncio.to_thread(self._consumer.commit, offsets=partitions, asynchronous=False)
        except ck.KafkaException as exc:
            code = exc.args[0].code() if exc.args else None
            if code in (ck.KafkaError.REBALANCE_IN_PROGRESS, ck.KafkaError.ILLEGAL_GENERATION):
                raise RebalancedError(str(exc)) from exc
            raise

    def _lag(self) -> int:
        consumer = self._consumer
        partitions = consumer.assignment() if consumer is not None else []
        if not partitions:
            return 0
        total = 0
        for tp in consumer.committed(partitions, timeout=10):
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            committed = tp.offset
            if committed < 0:
                if self.auto_offset_reset != "earliest":
                    continue
                committed = low
            total += max(0, high - committed)
        return total

    async def lag(self) -> int:
        return await asyncio.to_thread(self._lag)

    def _close(self) -> None:
        with self._lock:
            consumer, self._consumer = self._consumer, None
            if consumer is not None:
                consumer.close()  # leaves the group; commits nothing (auto-commit is off)

    async def stop(self) -> None:
        await asyncio.to_thread(self._close)


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
    #: the consumer group splits the partitions between the triggerers (same group.id)
    shareable = True

    def __init__(self, url: str, **options: Any) -> None:
        parsed = KafkaUrl(url, options)
        super().__init__(**parsed.common)
        o = parsed.options
        self.options = o
        self.bootstrap = parsed.bootstrap
        self.topics = list(parsed.topics)
        self.username = parsed.username
        self.masked_url = parsed.masked
        self.settings: ClientSettings = ClientSettings.build(
            parsed.bootstrap, parsed.username, parsed.password, o.given(*CLIENT_OPTIONS)
        )
        self.group_id: str = o.group_id or DEFAULT_GROUP_ID
        self.poll_timeout: float = o.poll_timeout or DEFAULT_POLL_TIMEOUT
        consumer = o.given(*CONSUMER_OPTIONS)
        consumer["auto_offset_reset"] = consumer.get("auto_offset_reset") or "earliest"
        # A fetch that finds nothing waits this long on the broker before answering; the
        # clients' 500 ms default delays a message arriving on a quiet topic by as much.
        consumer.setdefault("fetch_max_wait_ms", DEFAULT_FETCH_MAX_WAIT_MS)
        if consumer["auto_offset_reset"] not in ("earliest", "latest", "none"):
            raise ValueError(
                f"auto_offset_reset must be earliest, latest or none, not {consumer['auto_offset_reset']!r}"
            )
        #: the consumer's own options (what is left once the connection settings are taken out)
        self.consumer_options = consumer
        self._client: _Client | None = None

    @property
    def auto_offset_reset(self) -> str:
        return str(self.consumer_options["auto_offset_reset"])

    # -- the broker side ---------------------------------------------------------------

    async def open(self) -> None:
        kind = _ConfluentClient if self.settings.client == "confluent" else _AiokafkaClient
        client = kind(self.settings, self.topics, self.group_id, self.consumer_options)
        try:
            await client.start()
        except BaseException:
            await client.stop()
            raise
        self._client = client

    async def receive(self, max_messages: int) -> list[Message]:
        client = self._require_client()
        records = await client.fetch(max_messages, self.poll_timeout)
        received_at = datetime.now(UTC)  # one fetch: one time for its batch
        return [self._message(r, client.revocations.get((r.topic, r.partition), 0), received_at) for r in records]

    def _message(self, record: Record, epoch: int, received_at: datetime) -> Message:
        metadata: dict[str, Any] = {
            "broker": "kafka",
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "group_id": self.group_id,
        }
        if record.timestamp_ms is not None and record.timestamp_ms >= 0:
            metadata["published_at"] = millis_text(record.timestamp_ms)
        return Message(
            body=record.value if record.value is not None else b"",
            dedupe_key=f"{record.topic}:{record.partition}:{record.offset}",
            key=record.key,
            headers=normalize_headers(record.headers),
            metadata=metadata,
            received_at=received_at,
            handle=((record.topic, record.partition), record.offset, epoch),
        )

    async def ack(self, messages: list[Message]) -> None:
        """Commit, per partition, the highest acknowledged offset + 1.

        Skips partitions revoked since the batch was received: their new owner
        re-reads from the last committed offset and the dedupe key drops the repeats.
        """
        client = self._require_client()
        assigned = client.assignment()
        offsets: dict[Partition, int] = {}
        for message in messages:
            partition, offset, epoch = message.handle
            if partition not in assigned or client.revocations.get(partition, 0) != epoch:
                continue
            offsets[partition] = max(offsets.get(partition, -1), offset + 1)
        if not offsets:
            return
        try:
            await client.commit(offsets)
        except RebalancedError as exc:
            # A rebalance started during the commit: the stored messages come back to
            # whoever owns the partition now, and are deduped there.
            log.info("kafka group %s: offsets not committed after a rebalance (%s)", self.group_id, exc)

    async def close(self) -> None:
        """Leave the group without committing: unacknowledged messages are read again."""
        client, self._client = self._client, None
        if client is not None:
            await client.stop()

    async def lag(self) -> int | None:
        """Messages behind the end of the assigned partitions: end offset - committed offset."""
        client = self._client
        return None if client is None else await client.lag()

    def describe(self) -> dict[str, Any]:
        user = f"{self.username}:***@" if self.username else ""
        described: dict[str, Any] = {
            "url": f"kafka://{user}{self.bootstrap}/{','.join(self.topics)}?group_id={self.group_id}",
            "broker": "kafka",
            "topics": self.topics,
            "group_id": self.group_id,
            "poll_timeout": self.poll_timeout,
            "client": self.settings.client,
            **self.consumer_options,
        }
        if self.settings.api_version is not None:
            described["api_version"] = self.settings.api_version
        if self.settings.security_protocol != "PLAINTEXT":
            described["security_protocol"] = self.settings.security_protocol
        return described

    def _require_client(self) -> _Client:
        if self._client is None:
            raise RuntimeError("the Kafka trigger is not open")
        return self._client


# -- publishing ------------------------------------------------------------------------------------


def _acks(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


class KafkaPublisher(Publisher):
    """Sends to Kafka topics through one producer per cluster, credentials and `acks`.

    `kafka://HOST:PORT/TOPIC[?key=K&acks=all]`; waits for the broker's ack.
    """

    @classmethod
    def _target(cls, url: str) -> tuple[KafkaUrl, ClientSettings, str]:
        parsed = KafkaUrl(url)
        if len(parsed.topics) != 1:
            raise ValueError(f"publish needs exactly one topic in {parsed.masked!r}, not {len(parsed.topics)}")
        settings = ClientSettings.build(
            parsed.bootstrap, parsed.username, parsed.password, parsed.options.given(*CLIENT_OPTIONS)
        )
        return parsed, settings, parsed.options.acks or "all"

    @classmethod
    def pool_key(cls, url: str) -> str:
        _parsed, settings, acks = cls._target(url)
        return repr((settings, acks))

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._producer: AIOKafkaProducer | None = None
        self._confluent: Any = None
        self._lock = threading.Lock()

    async def open(self) -> None:
        _parsed, settings, acks = self._target(self.url)
        if settings.client == "confluent":
            import confluent_kafka

            self._confluent = confluent_kafka.Producer({**settings.confluent_config(), "acks": acks}, logger=log)
            return
        producer = AIOKafkaProducer(acks=_acks(acks), **settings.aiokafka_args())
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    def _confluent_send(self, topic: str, body: bytes, key: Any, headers: Any) -> None:
        import confluent_kafka

        failures: list[Any] = []
        with self._lock:
            self._confluent.produce(
                topic, body, key=key, headers=headers, on_delivery=lambda err, _msg: failures.append(err)
            )
            if self._confluent.flush(30) > 0:
                raise TimeoutError(f"kafka: message to {topic!r} not delivered within 30 s")
        if failures and failures[0] is not None:
            raise confluent_kafka.KafkaException(failures[0])

    async def publish(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        parsed, _settings, _acks = self._target(url)
        key = parsed.options.key
        key_bytes = key.encode("utf-8") if key is not None else None
        header_list = [(name, value.encode("utf-8")) for name, value in headers.items()] or None
        if self._confluent is not None:
            await asyncio.to_thread(self._confluent_send, parsed.topics[0], body, key_bytes, header_list)
            return
        assert self._producer is not None
        await self._producer.send_and_wait(parsed.topics[0], body, key=key_bytes, headers=header_list)

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
        confluent, self._confluent = self._confluent, None
        if confluent is not None:
            await asyncio.to_thread(confluent.flush, 10)
