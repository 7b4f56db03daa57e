"""Which trigger class and which publisher serve each URL scheme.

The table is static and resolved lazily: importing Herald imports no broker
client. Third-party triggers register through the `herald.triggers` entry-point
group; two classes claiming one scheme is an error, never a silent choice.
"""

from __future__ import annotations

import importlib
import re
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlsplit

from herald.triggers.base import BaseEventTrigger, Publisher

# scheme -> (module, trigger class, publisher class, pip extra). The publisher of
# local:// lives beside the triggerer (it writes to Herald's own database).
BUILTIN: dict[str, tuple[str, str, str, str | None]] = {
    "local": ("herald.triggers.local", "LocalQueueTrigger", "herald.triggerer.local_queue:LocalQueuePublisher", None),
    "sqs": ("herald.triggers.sqs", "SqsTrigger", "SqsPublisher", "sqs"),
    "sqs+http": ("herald.triggers.sqs", "SqsTrigger", "SqsPublisher", "sqs"),
    "sqs+https": ("herald.triggers.sqs", "SqsTrigger", "SqsPublisher", "sqs"),
    "kinesis": ("herald.triggers.kinesis", "KinesisTrigger", "KinesisPublisher", "kinesis"),
    "kinesis+http": ("herald.triggers.kinesis", "KinesisTrigger", "KinesisPublisher", "kinesis"),
    "kinesis+https": ("herald.triggers.kinesis", "KinesisTrigger", "KinesisPublisher", "kinesis"),
    "kafka": ("herald.triggers.kafka", "KafkaTrigger", "KafkaPublisher", "kafka"),
    "amqp": ("herald.triggers.rabbitmq", "RabbitMQTrigger", "RabbitMQPublisher", "rabbitmq"),
    "amqps": ("herald.triggers.rabbitmq", "RabbitMQTrigger", "RabbitMQPublisher", "rabbitmq"),
    "redis": ("herald.triggers.redis_streams", "RedisStreamTrigger", "RedisStreamPublisher", "redis"),
    "rediss": ("herald.triggers.redis_streams", "RedisStreamTrigger", "RedisStreamPublisher", "redis"),
    "redis+pubsub": ("herald.triggers.redis_pubsub", "RedisPubSubTrigger", "RedisPubSubPublisher", "redis"),
    "nats": ("herald.triggers.nats", "NatsTrigger", "NatsPublisher", "nats"),
    "mqtt": ("herald.triggers.mqtt", "MqttTrigger", "MqttPublisher", "mqtt"),
    "postgres": ("herald.triggers.postgres", "PostgresTrigger", "PostgresPublisher", "postgres"),
    "postgresql": ("herald.triggers.postgres", "PostgresTrigger", "PostgresPublisher", "postgres"),
}


_AWS_SQS_HOST = re.compile(r"^sqs[.-][a-z0-9-]+\.amazonaws\.com(\.cn)?$")
#: the path of an SQS queue URL as boto3 and the AWS console print it: /ACCOUNT/QUEUE
_SQS_QUEUE_PATH = re.compile(r"^/\d{12}/[^/]+$")


class UnknownSchemeError(ValueError):
    """No trigger serves this URL scheme.

    Attributes:
        message: what is wrong.
        hint: what to write instead, when the URL looks like one Herald knows by another scheme.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(f"{message}; {hint}" if hint else message)
        self.message = message
        self.hint = hint


def _hint(url: str, scheme: str) -> str | None:
    """What to write for a URL copied from another tool: boto3's SQS queue URL is plain http(s)."""
    if scheme not in ("http", "https"):
        return None
    rest = url.split("://", 1)[1]
    if _SQS_QUEUE_PATH.match(urlsplit(url).path):
        return f"an SQS queue URL (as boto3 prints it) is written sqs+{scheme}://{rest}"
    return f"Herald's URLs name the broker: sqs+{scheme}://HOST/ACCOUNT/QUEUE, kinesis+{scheme}://HOST/STREAM..."


def scheme_of(url: str) -> str:
    """The scheme of a queue URL, checked against the known ones."""
    if not isinstance(url, str) or "://" not in url:
        raise UnknownSchemeError(f"{url!r} is not a queue URL: expected SCHEME://..., for example local://orders")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "https" and _AWS_SQS_HOST.match(parts.hostname or ""):
        return "sqs"  # Airflow's MessageQueueTrigger(queue="https://sqs.REGION.amazonaws.com/...")
    if scheme not in BUILTIN and scheme not in _plugins():
        known = ", ".join(sorted(set(BUILTIN) | set(_plugins())))
        raise UnknownSchemeError(f"no trigger for scheme {scheme!r} in {url!r}; known: {known}", _hint(url, scheme))
    return scheme


def _plugins() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for ep in entry_points(group="herald.triggers"):
        if ep.name in BUILTIN or ep.name in found:
            raise RuntimeError(f"two triggers claim the URL scheme {ep.name!r}; uninstall one of them")
        found[ep.name] = ep
    return found


def _module(scheme: str) -> Any:
    module, _cls, _pub, extra = BUILTIN[scheme]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if extra is None:
            raise
        raise ImportError(
            f"{scheme}:// needs a client library that is not installed ({exc.name}); "
            f"install it with: pip install 'herald[{extra}]'"
        ) from exc


def trigger_class(scheme: str) -> type[BaseEventTrigger]:
    """The trigger class serving `scheme`."""
    if scheme in BUILTIN:
        cls: type[BaseEventTrigger] = getattr(_module(scheme), BUILTIN[scheme][1])
        return cls
    loaded: type[BaseEventTrigger] = _plugins()[scheme].load()
    return loaded


def publisher_class(scheme: str) -> type[Publisher]:
    """The `Publisher` class serving `scheme` (a plugin's trigger class names it as `publisher_class`)."""
    if scheme in BUILTIN:
        name = BUILTIN[scheme][2]
        if ":" in name:
            module_name, _, attr = name.partition(":")
            cls: type[Publisher] = getattr(importlib.import_module(module_name), attr)
            return cls
        found: type[Publisher] = getattr(_module(scheme), name)
        return found
    trigger = _plugins()[scheme].load()
    plugin: type[Publisher] | None = getattr(trigger, "publisher_class", None)
    if plugin is None:
        raise UnknownSchemeError(f"the {scheme}:// trigger {trigger.__name__} has no publisher_class")
    return plugin
