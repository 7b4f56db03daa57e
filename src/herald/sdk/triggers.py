"""The trigger contract: what a message source and a publisher implement.

This is the plugin boundary. A trigger only talks to its broker: `open`,
`receive` a batch (long polling, never a fixed sleep), `ack` what the triggerer
committed, `close`, and say its `lag` and a masked `describe()`. The triggerer
owns the transaction; a trigger never sees the database and never acknowledges
a message before `ack` is called. A publisher sends messages to one broker
connection, kept open across calls by the pool in `herald.triggers.base`.

Nothing here does I/O or imports a broker client or the database, so DAG files
can import it freely.
"""

from __future__ import annotations

import abc
import base64
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

#: messages larger than this become dead letters unless a trigger says otherwise
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024


def header_text(value: Any) -> str:
    """One header value as text: bytes as UTF-8 (base64 when they are not), lists joined by commas."""
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii")  # lossless, where replacement would not be
    if isinstance(value, list | tuple):
        return ",".join(header_text(v) for v in value)
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None:
        return ""
    return str(value)


def normalize_headers(headers: Mapping[Any, Any] | list[tuple[Any, Any]] | None) -> dict[str, str]:
    """Headers of any broker as `{text: text}`: the one place header values are decoded.

    Brokers give bytes (Kafka, NATS), lists (NATS, MQTT user properties may
    repeat a name), or typed values (AMQP); events and dead letters always store text.
    """
    if not headers:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {header_text(k): header_text(v) for k, v in items}


@dataclass
class Message:
    """One message as a trigger received it.

    Attributes:
        body: the raw body.
        dedupe_key: the broker's identity of the message (queue + message id,
            topic + partition + offset, ...), unique per watcher.
        key: the message key, where the broker has one (Kafka).
        headers: message headers or attributes, as text (normalised on creation).
        metadata: where the message came from (broker, queue, partition, offset,
            message id...), stored in the event's `extra["message"]`.
        received_at: when the trigger received it (UTC).
        handle: the broker's own object, kept for `ack`.
        checkpoint: `(position key, position)` for a stream that has no
            acknowledgement (Kinesis: shard id and sequence number). The
            triggerer commits it in the same transaction as the message's event,
            and hands the committed positions back through
            `BaseEventTrigger.resume` before the next `open`.
    """

    body: bytes
    dedupe_key: str
    key: bytes | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    handle: Any = None
    checkpoint: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        self.headers = normalize_headers(self.headers)

    def value(self) -> bytes:
        """The body, as Airflow's Kafka messages return it: `json.loads(message.value())`."""
        return self.body

    def text(self) -> str:
        """The body decoded as UTF-8 (raises UnicodeDecodeError when it is not)."""
        return self.body.decode("utf-8")

    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError when it is not)."""
        return json.loads(self.body)


def decode_body(body: bytes) -> tuple[Any, str | None]:
    """The default payload of a body: JSON when it parses, else text, else base64.

    Returns the payload and its encoding (`"base64"` for a body that is not UTF-8).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), "base64"
    try:
        return json.loads(text), None
    except ValueError:
        return text, None


def resolve_dotted(path: str) -> Callable[..., Any]:
    """Import the function named `module.function` (or `module:function`) now, when the DAG file loads.

    `module` may be the DAG file being loaded (Airflow's guide names its function
    `"kafka_example_dag.apply_function"`, an Astro project `"dags.module.fn"`): it
    is then found among the modules being imported instead of being imported a
    second time, so the function must be defined above the trigger. An
    unresolvable name raises `ImportError`, which makes it an import error of the
    DAG file, never a dead letter per message.
    """
    import importlib

    module_name, sep, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not sep or not module_name or not attr:
        raise ValueError(f"apply_function {path!r} is not a dotted path like 'module.function'")
    module: Any = sys.modules.get(module_name)
    if module is None:
        module = _module_being_loaded(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ImportError(f"apply_function {path!r}: cannot import module {module_name!r}: {exc}") from exc
    function = getattr(module, attr, None)
    if not callable(function):
        raise ImportError(
            f"apply_function {path!r}: module {module_name!r} has no function {attr!r}"
            " (in the DAG file itself, define it above the trigger)"
        )
    return function  # type: ignore[no-any-return]


def _module_being_loaded(module_name: str) -> Any:
    """The module object of `module_name`'s file if it is already loaded under another name (a DAG file)."""
    import importlib.util
    from pathlib import Path

    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    origin = Path(spec.origin).resolve()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve() == origin:
            return module
    return None


#: the delivery of a trigger that implements Herald's contract (`describe()` may say otherwise)
DEFAULT_DELIVERY = (
    "nothing lost, nothing doubled: acknowledged to the source only after its event is committed, "
    "redeliveries deduplicated"
)

#: the options every trigger takes, whatever its broker
COMMON_OPTIONS = ("apply_function", "filter", "max_payload_bytes")


class BaseEventTrigger(abc.ABC):
    """Base class of every message source a watcher can consume.

    Herald's contract is `open`/`receive`/`ack`/`close`/`describe`. A trigger
    written for Airflow (`serialize()` returning `(classpath, kwargs)`, `async def
    run()` yielding `TriggerEvent(payload)`) works too, through the adapter of
    `herald.sdk.airflow_triggers`: it has no acknowledgement, so it gives at most
    once unless its payload names the event (`dedupe_on`); implement `receive`
    and `ack` for Herald's guarantee.

    Args:
        apply_function: callable turning a `Message` into the event payload, or
            returning `None` to skip the message (acknowledged, counted, no event).
            An exception, or a result that is not JSON-serialisable, makes the
            message a dead letter.
        filter: a JMESPath expression evaluated on the payload; a message is kept
            when the result is truthy, else skipped.
        max_payload_bytes: bodies larger than this become dead letters.
    """

    scheme: ClassVar[str]
    #: Several triggerers may consume this trigger's queue at once (competing consumers:
    #: SQS, RabbitMQ, a Kafka or Redis consumer group, a JetStream durable consumer,
    #: a PostgreSQL queue read with SKIP LOCKED). Every live triggerer then runs it and
    #: the dedupe key keeps each message one event. False: one triggerer at a time reads
    #: it, the one holding its lease.
    shareable: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A trigger written for Airflow (serialize(), async run() yielding TriggerEvent) and not
        # for Herald's contract gets the adapter's open/receive/ack/describe (at most once: see
        # herald.sdk.airflow_triggers); a class that implements receive keeps its own.
        if callable(getattr(cls, "run", None)) and getattr(cls.receive, "__isabstractmethod__", False):
            from herald.sdk.airflow_triggers import AirflowStyleTrigger

            for name in ("open", "receive", "_message", "ack", "close", "describe", "to_payload"):
                if name not in cls.__dict__:
                    setattr(cls, name, getattr(AirflowStyleTrigger, name))
            for name in ("dedupe_on", "_pump", "_buffer", "_failure"):
                if not hasattr(cls, name):
                    setattr(cls, name, getattr(AirflowStyleTrigger, name))
            cls.__abstractmethods__ = frozenset()

    def __init__(
        self,
        *,
        apply_function: Callable[[Message], Any] | str | None = None,
        filter: str | None = None,
        max_payload_bytes: int | None = None,
    ) -> None:
        if apply_function is not None and not callable(apply_function) and not isinstance(apply_function, str):
            raise TypeError(f"apply_function must be a callable taking a Message, got {apply_function!r}")
        # A dotted string ("my_dag_file.parse") is accepted so that Airflow DAGs port
        # unchanged; it is resolved now, while the DAG file loads (its own module
        # included), so a wrong name is an import error of the file, not a dead
        # letter per message. Prefer passing the function itself.
        if isinstance(apply_function, str):
            apply_function = resolve_dotted(apply_function)
        self.apply_function: Callable[[Message], Any] | str | None = apply_function
        self.filter = filter
        self._filter_compiled: Any = None
        if filter is not None:
            import jmespath
            from jmespath.exceptions import JMESPathError

            try:
                self._filter_compiled = jmespath.compile(filter)
            except JMESPathError as exc:
                raise ValueError(f"invalid filter {filter!r}: {exc}") from None
        if max_payload_bytes is not None and (isinstance(max_payload_bytes, bool) or int(max_payload_bytes) < 1):
            raise ValueError(f"max_payload_bytes must be a positive integer, got {max_payload_bytes!r}")
        self.max_payload_bytes = int(max_payload_bytes) if max_payload_bytes else DEFAULT_MAX_PAYLOAD_BYTES
        #: False: the deployment's default (HERALD_MAX_PAYLOAD_BYTES) applies, set by the triggerer
        self.max_payload_bytes_given = bool(max_payload_bytes)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> BaseEventTrigger:
        """Build the trigger from its queue URL (what `MessageQueueTrigger` calls)."""
        return cls(url, **options)  # type: ignore[call-arg]

    # -- the broker side ---------------------------------------------------------------

    def resume(self, checkpoints: dict[str, str]) -> None:  # noqa: B027 - optional hook
        """Take the positions last committed with events (`Message.checkpoint`), before `open`.

        Called with `{position key: position}` (empty the first time) before every
        `open`, so a trigger that reconnects or restarts reads on from what the
        metadata database holds, not from what it had merely received. Brokers
        that acknowledge (queues, consumer groups) ignore it.
        """

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect to the broker; raise to be retried with back-off."""

    @abc.abstractmethod
    async def receive(self, max_messages: int) -> list[Message]:
        """Wait for messages and return up to `max_messages` of them.

        Long-polls: returns as soon as one message is there; may return an empty
        list after the broker's own wait time. Never sleeps a fixed time.
        """

    @abc.abstractmethod
    async def ack(self, messages: list[Message]) -> None:
        """Acknowledge messages whose events (or dead letters) are committed."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Disconnect. Unacknowledged messages go back to the broker."""

    async def lag(self) -> int | None:
        """Messages waiting in the broker for this consumer, where the broker tells it."""
        return None

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """A JSON form of the trigger with secrets masked, for listings."""

    def consumer_key(self) -> str:
        """Watchers whose triggers have the same key share one consumer."""
        return json.dumps(self.describe(), sort_keys=True, default=str)

    # -- the message side --------------------------------------------------------------

    def to_payload(self, message: Message) -> tuple[bool, Any, str | None]:
        """Turn a message into `(keep, payload, encoding)`; raises for a dead letter."""
        if len(message.body) > self.max_payload_bytes:
            raise ValueError(
                f"message body is {len(message.body)} bytes, over the limit of "
                f"{self.max_payload_bytes} (max_payload_bytes)"
            )
        encoding: str | None = None
        if self.apply_function is not None:
            if isinstance(self.apply_function, str):
                self.apply_function = resolve_dotted(self.apply_function)
            payload = self.apply_function(message)
            if payload is None:
                return False, None, None
            try:
                json.dumps(payload)
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"apply_function returned a {type(payload).__name__}, which is not JSON-serialisable: {exc}"
                ) from None
        else:
            payload, encoding = decode_body(message.body)
        if self._filter_compiled is not None and not self._filter_compiled.search(payload):
            return False, payload, encoding
        return True, payload, encoding

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


class Publisher(abc.ABC):
    """One open connection that sends messages to one broker.

    The pool (`herald.triggers.base.publishers`) builds one per URL and options,
    opens it on first use, reuses it for every later `publish` to the same
    place, and closes every publisher through one path at exit. A publisher
    belongs to the event loop that opened it.

    Args:
        url: the queue URL, connection already resolved (`conn_id` applied).
    """

    def __init__(self, url: str) -> None:
        self.url = url

    @classmethod
    def pool_key(cls, url: str) -> str:
        """Publishers of URLs with the same key share one connection (default: the URL)."""
        return url

    @property
    def is_open(self) -> bool:
        """False once the connection is known to be gone (the pool then opens a new publisher)."""
        return True

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect to the broker."""

    @abc.abstractmethod
    async def publish(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        """Send one message to the queue at `url` (a URL of this publisher's key) and wait until sent."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect; the pool opens a new publisher on the next call."""
