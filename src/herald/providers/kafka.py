"""`AwaitMessageTrigger` and `KafkaMessageQueueTrigger`: Airflow's Kafka trigger arguments, on Herald's Kafka trigger.

The payload of each event is what the `apply_function` returns; a falsy
return (None, False, 0, "", {}) skips the message, as Airflow's `if event:`
does. The function receives a message with confluent-kafka's methods
(`value()`, `key()`, `topic()`, `partition()`, `offset()`, `headers()`,
`timestamp()`, `error()`, `len()`), after `apply_function_args` and before
`apply_function_kwargs`, as Airflow calls it. Without an `apply_function`
the payload is the value decoded as UTF-8.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from herald.providers.connections import Connection, get_connection, undefined
from herald.sdk.triggers import resolve_dotted
from herald.triggers.base import BaseEventTrigger, Message

#: confluent-kafka's timestamp types
TIMESTAMP_NOT_AVAILABLE = 0
TIMESTAMP_CREATE_TIME = 1

#: librdkafka properties of a connection's extra -> Herald's Kafka options
_CONFIG_OPTIONS = {
    "group.id": "group_id",
    "auto.offset.reset": "auto_offset_reset",
    "client.id": "client_id",
    "security.protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.mechanisms": "sasl_mechanism",
    "session.timeout.ms": "session_timeout_ms",
    "heartbeat.interval.ms": "heartbeat_interval_ms",
    "max.poll.interval.ms": "max_poll_interval_ms",
    "fetch.wait.max.ms": "fetch_max_wait_ms",
}
#: librdkafka's other names for the auto.offset.reset values
_OFFSET_RESET = {"smallest": "earliest", "beginning": "earliest", "largest": "latest", "end": "latest"}
#: properties that do not change what runs: Herald commits offsets itself, after storing
_IGNORED_CONFIG = {"enable.auto.commit", "enable.auto.offset.store", "error_cb"}


class KafkaMessage:
    """A Herald message with confluent-kafka's `Message` methods, for an `apply_function` written for Airflow."""

    def __init__(self, message: Message) -> None:
        self._message = message

    def value(self) -> bytes:
        """The value (the message body)."""
        return self._message.body

    def key(self) -> bytes | None:
        """The key, as bytes, or None."""
        key = self._message.key
        return key.encode("utf-8") if isinstance(key, str) else key

    def topic(self) -> str | None:
        """The topic."""
        value = self._message.metadata.get("topic")
        return None if value is None else str(value)

    def partition(self) -> int | None:
        """The partition."""
        value = self._message.metadata.get("partition")
        return None if value is None else int(value)

    def offset(self) -> int | None:
        """The offset."""
        value = self._message.metadata.get("offset")
        return None if value is None else int(value)

    def headers(self) -> list[tuple[str, bytes]] | None:
        """The headers as `(name, value)` pairs, or None when there are none."""
        if not self._message.headers:
            return None
        return [(name, value.encode("utf-8")) for name, value in self._message.headers.items()]

    def timestamp(self) -> tuple[int, int]:
        """`(type, milliseconds since the epoch)`; `(0, -1)` when the broker gave none."""
        published = self._message.metadata.get("published_at")
        if not published:
            return (TIMESTAMP_NOT_AVAILABLE, -1)
        moment = datetime.fromisoformat(str(published))
        return (TIMESTAMP_CREATE_TIME, round(moment.timestamp() * 1000))

    def error(self) -> None:
        """Always None: Herald hands over only messages, never consumer errors."""
        return None

    def len(self) -> int:
        """The length of the value in bytes."""
        return len(self._message.body)

    def __len__(self) -> int:
        return len(self._message.body)

    def __repr__(self) -> str:
        return f"KafkaMessage(topic={self.topic()!r}, partition={self.partition()!r}, offset={self.offset()!r})"


def resolve_apply_function(path: str) -> Callable[..., Any]:
    """Import the function named `module.function` now, when the DAG file loads (see `resolve_dotted`)."""
    return resolve_dotted(path)


class KafkaApply:
    """The apply step of an Airflow-spelled Kafka trigger: Airflow's call and its falsy-skips rule.

    Args:
        function: the user's apply_function, or None for the UTF-8 value.
        args: `apply_function_args`, passed before the message.
        kwargs: `apply_function_kwargs`.
    """

    def __init__(self, function: Callable[..., Any] | None, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        self.function = function
        self.args = tuple(args)
        self.kwargs = dict(kwargs)

    def __call__(self, message: Message) -> Any:
        wrapped = KafkaMessage(message)
        if self.function is None:
            result: Any = wrapped.value().decode("utf-8") if message.body else None
        else:
            result = self.function(*self.args, wrapped, **self.kwargs)
        # Airflow makes an event only `if event:`; None tells Herald to skip (ack, count, no event).
        return result if result else None


def _connection_options(connection: Connection) -> tuple[str, dict[str, str], str | None, str | None]:
    """`(bootstrap, options, user, password)` from a Kafka connection (Airflow's config dict, or a Herald URL)."""
    config = dict(connection.extra)
    bootstrap = config.pop("bootstrap.servers", None)
    if bootstrap is None and connection.host:
        bootstrap = f"{connection.host}:{connection.port}" if connection.port else connection.host
    if not bootstrap:
        raise ValueError(f"connection {connection.conn_id!r}: config['bootstrap.servers'] must be provided.")
    user = config.pop("sasl.username", None) or connection.login
    password = config.pop("sasl.password", None) or connection.password
    options: dict[str, str] = {}
    for name, value in config.items():
        if name in _IGNORED_CONFIG:
            continue
        if name in _CONFIG_OPTIONS:
            option = _CONFIG_OPTIONS[name]
            options[option] = _OFFSET_RESET.get(str(value), str(value)) if option == "auto_offset_reset" else str(value)
        elif "." not in name:
            options[name] = str(value)  # a Herald option (group_id=...) of a Herald URL connection
        else:
            raise ValueError(
                f"connection {connection.conn_id!r}: Kafka property {name!r} is not supported by Herald; "
                f"supported: bootstrap.servers, sasl.username, sasl.password, {', '.join(sorted(_CONFIG_OPTIONS))}"
            )
    return str(bootstrap), options, user, password


def kafka_url(topics: Sequence[str], kafka_config_id: str, queue: str | None = None) -> str:
    """The `kafka://` URL: servers and options from the connection, else from Airflow's `queue=` URL."""
    connection = get_connection(kafka_config_id)
    query: dict[str, str] = {}
    user = password = None
    if connection is not None:
        bootstrap, query, user, password = _connection_options(connection)
    elif queue is not None:
        # Airflow reads the servers from kafka_default even then; with no such
        # connection, the servers the URL names are the only ones there are.
        parts = urlsplit(queue)
        bootstrap = parts.netloc
        query = dict(parse_qsl(parts.query))
    else:
        raise undefined(kafka_config_id)
    if queue is not None:
        query = {**query, **dict(parse_qsl(urlsplit(queue).query))}
    for topic in topics:
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"topics must be topic names, got {topic!r}")
        if topic.startswith("^"):
            raise ValueError(f"topic {topic!r}: a topic pattern is not supported by Herald; list the topics by name")
    credentials = f"{quote(user, safe='')}:{quote(password or '', safe='')}@" if user else ""
    encoded = f"?{urlencode(query)}" if query else ""
    return f"kafka://{credentials}{bootstrap}/{','.join(quote(t, safe='') for t in topics)}{encoded}"


def AwaitMessageTrigger(
    topics: Sequence[str],
    apply_function: str | Callable[..., Any] | None = None,
    kafka_config_id: str = "kafka_default",
    apply_function_args: Sequence[Any] | None = None,
    apply_function_kwargs: dict[Any, Any] | None = None,
    poll_timeout: float = 1,
    poll_interval: float = 5,
    commit_offset: bool = True,
    *,
    queue: str | None = None,
) -> BaseEventTrigger:
    """Airflow's Kafka `AwaitMessageTrigger` arguments, with their defaults, as a Herald Kafka trigger.

    Args:
        topics: the topics to consume.
        apply_function: a callable, or its dotted name (`"dags.module.fn"`), resolved now.
        kafka_config_id: the connection whose extra is librdkafka's configuration
            (`bootstrap.servers`, `group.id`, `auto.offset.reset`, SASL...).
        apply_function_args: positional arguments before the message.
        apply_function_kwargs: keyword arguments.
        poll_timeout: how long one poll waits for a message (seconds).
        poll_interval: accepted; Herald polls again at once instead of sleeping
            after a skipped message (docs/airflow-triggers.md).
        commit_offset: must be True: Herald commits the offset once the event is
            committed (False, leaving offsets to a task, is refused).
        queue: Airflow's `queue=` URL (`kafka://HOST:PORT/TOPIC`), used for the
            servers when the connection is not defined.
    """
    if isinstance(topics, str):
        topics = [topics]
    if not topics:
        raise ValueError("topics is required: the Kafka topics to consume")
    if not commit_offset:
        raise ValueError(
            "commit_offset=False is not supported: Herald commits a message's offset only once its event "
            "is committed, so nothing is lost; remove the argument"
        )
    for name, value in (("poll_timeout", poll_timeout), ("poll_interval", poll_interval)):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    if apply_function is None:
        function = None
    elif isinstance(apply_function, str):
        function = resolve_apply_function(apply_function)
    elif callable(apply_function):
        function = apply_function
    else:
        raise TypeError(f"apply_function must be a callable or its dotted name, got {apply_function!r}")
    if apply_function_kwargs is not None and not isinstance(apply_function_kwargs, dict):
        raise TypeError("apply_function_kwargs must be a dict")
    url = kafka_url(list(topics), kafka_config_id, queue)
    from herald.triggers.registry import trigger_class

    apply = KafkaApply(function, apply_function_args or (), apply_function_kwargs or {})
    return trigger_class("kafka").from_url(url, apply_function=apply, poll_timeout=float(poll_timeout))


def KafkaMessageQueueTrigger(
    *,
    topics: Sequence[str],
    kafka_config_id: str = "kafka_default",
    apply_function: str | Callable[..., Any],
    apply_function_args: list[Any] | None = None,
    apply_function_kwargs: dict[Any, Any] | None = None,
    poll_timeout: float = 1,
    poll_interval: float = 5,
    **kwargs: Any,
) -> BaseEventTrigger:
    """Airflow's `KafkaMessageQueueTrigger`: `AwaitMessageTrigger` with a required `apply_function`."""
    return AwaitMessageTrigger(
        topics=topics,
        apply_function=apply_function,
        kafka_config_id=kafka_config_id,
        apply_function_args=apply_function_args,
        apply_function_kwargs=apply_function_kwargs,
        poll_timeout=poll_timeout,
        poll_interval=poll_interval,
        **kwargs,
    )
