"""The plugin boundary: a trigger talks to its broker; the triggerer owns the transaction.

Every trigger follows the delivery contract: `receive` a batch (long polling,
never a fixed sleep), let the triggerer commit the events, then `ack`. A trigger
never acknowledges a message before `ack` is called.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

#: messages larger than this become dead letters unless a trigger says otherwise
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024


@dataclass
class Message:
    """One message as a trigger received it.

    Attributes:
        body: the raw body.
        dedupe_key: the broker's identity of the message (queue + message id,
            topic + partition + offset, ...), unique per watcher.
        key: the message key, where the broker has one (Kafka).
        headers: message headers or attributes, as text.
        metadata: where the message came from (broker, queue, partition, offset,
            message id...), stored in the event's `extra["message"]`.
        received_at: when the trigger received it (UTC).
        handle: the broker's own object, kept for `ack`.
    """

    body: bytes
    dedupe_key: str
    key: bytes | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    handle: Any = None

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


def resolve_dotted(path: str) -> Callable[[Message], Any]:
    """Import `package.module.function` (or `module:function`) and return the function."""
    import importlib

    module_name, sep, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not sep or not module_name or not attr:
        raise ValueError(f"apply_function {path!r} is not a dotted path like 'module.function'")
    module = importlib.import_module(module_name)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise TypeError(f"apply_function {path!r} is not a callable in module {module_name!r}")
    return fn  # type: ignore[no-any-return]


class TriggerRuntime(Protocol):
    """What the triggerer lends a trigger whose broker is Herald's own database (local://)."""

    async def local_fetch(self, queue: str, after_id: int, limit: int) -> list[Any]:
        """Rows `(id, body, headers, created_at)` of `queue` above `after_id`."""
        ...

    def local_event(self, queue: str) -> asyncio.Event:
        """An event set when a message is published to `queue`."""
        ...

    def local_remove(self, connection: Any, ids: list[int]) -> None:
        """Delete rows inside the triggerer's transaction."""
        ...


class BaseEventTrigger(abc.ABC):
    """Base class of every message source a watcher can consume.

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
    #: True when `ack_in_transaction` acknowledges inside the event transaction
    #: (exactly once with no dedupe needed); `ack` is then not called.
    transactional_ack: ClassVar[bool] = False

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
        # unchanged; it is resolved on first use, since its module may be the very
        # DAG file being imported. Prefer passing the function itself.
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
        self.max_payload_bytes = max_payload_bytes or DEFAULT_MAX_PAYLOAD_BYTES

    @classmethod
    def from_url(cls, url: str, **options: Any) -> BaseEventTrigger:
        """Build the trigger from its queue URL (what `MessageQueueTrigger` calls)."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from a URL")

    # -- the broker side ---------------------------------------------------------------

    def bind(self, runtime: TriggerRuntime) -> None:  # noqa: B027 - optional hook
        """Receive Herald's services before `open` (only local:// needs them)."""

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

    def ack_in_transaction(self, connection: Any, messages: list[Message]) -> None:
        """Acknowledge inside the triggerer's transaction (only if `transactional_ack`)."""
        raise NotImplementedError

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
