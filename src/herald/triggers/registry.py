"""Which trigger class and which publisher serve each URL scheme.

The table is static and resolved lazily: importing Herald imports no broker
client. Third-party triggers register through the `herald.triggers` entry-point
group; two classes claiming one scheme is an error, never a silent choice.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlsplit

from herald.triggers.base import BaseEventTrigger

# scheme -> (module, trigger class, publish function, pip extra)
BUILTIN: dict[str, tuple[str, str, str, str | None]] = {
    "local": ("herald.triggers.local", "LocalQueueTrigger", "publish", None),
    "sqs": ("herald.triggers.sqs", "SqsTrigger", "publish", "sqs"),
    "sqs+http": ("herald.triggers.sqs", "SqsTrigger", "publish", "sqs"),
    "sqs+https": ("herald.triggers.sqs", "SqsTrigger", "publish", "sqs"),
    "kafka": ("herald.triggers.kafka", "KafkaTrigger", "publish", "kafka"),
    "amqp": ("herald.triggers.rabbitmq", "RabbitMQTrigger", "publish", "rabbitmq"),
    "amqps": ("herald.triggers.rabbitmq", "RabbitMQTrigger", "publish", "rabbitmq"),
    "redis": ("herald.triggers.redis_streams", "RedisStreamTrigger", "publish", "redis"),
    "rediss": ("herald.triggers.redis_streams", "RedisStreamTrigger", "publish", "redis"),
    "nats": ("herald.triggers.nats", "NatsTrigger", "publish", "nats"),
    "mqtt": ("herald.triggers.mqtt", "MqttTrigger", "publish", "mqtt"),
    "postgres": ("herald.triggers.postgres", "PostgresTrigger", "publish", "postgres"),
    "postgresql": ("herald.triggers.postgres", "PostgresTrigger", "publish", "postgres"),
}


_AWS_SQS_HOST = re.compile(r"^sqs[.-][a-z0-9-]+\.amazonaws\.com(\.cn)?$")


class UnknownSchemeError(ValueError):
    """No trigger serves this URL scheme."""


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
        raise UnknownSchemeError(f"no trigger for scheme {scheme!r} in {url!r}; known: {known}")
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


def publisher(scheme: str) -> Callable[..., Any]:
    """The async publish function serving `scheme`."""
    if scheme in BUILTIN:
        fn: Callable[..., Any] = getattr(_module(scheme), BUILTIN[scheme][2])
        return fn
    cls = _plugins()[scheme].load()
    fn = cls.publish
    return fn
