"""`RedisPubSubTrigger` (Airflow's Redis `AwaitMessageTrigger`): Redis pub/sub channels, at most once.

The payload of each event is the message as Airflow's trigger gives it:
`{"type": "message", "pattern": None, "channel": "<name>", "data": "<text>"}`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from herald.providers.connections import get_connection, undefined
from herald.triggers.base import BaseEventTrigger, Message


def pubsub_event(message: Message) -> dict[str, Any]:
    """A pub/sub message in the shape redis-py gives it, channel and data decoded as UTF-8."""
    try:
        data: Any = message.body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the message is not UTF-8 text, which Airflow's Redis trigger decodes it as") from None
    return {
        "type": "message",
        "pattern": message.metadata.get("pattern"),
        "channel": message.metadata.get("channel"),
        "data": data,
    }


def RedisPubSubTrigger(
    channels: list[str] | str,
    redis_conn_id: str = "redis_default",
    poll_interval: float = 60,
) -> BaseEventTrigger:
    """Airflow's Redis pub/sub trigger arguments, as a Herald `redis+pubsub://` trigger.

    Args:
        channels: the channels to subscribe to.
        redis_conn_id: the connection (host, port, login, password, extra `db`).
        poll_interval: accepted; a subscription is pushed each message, nothing is polled.
    """
    names = [channels] if isinstance(channels, str) else list(channels)
    if not names or not all(isinstance(c, str) and c and "," not in c for c in names):
        raise ValueError(f"channels must be channel names without commas, got {channels!r}")
    if isinstance(poll_interval, bool) or not isinstance(poll_interval, int | float) or poll_interval < 0:
        raise ValueError(f"poll_interval must be a number of seconds >= 0, got {poll_interval!r}")
    connection = get_connection(redis_conn_id)
    if connection is None:
        raise undefined(redis_conn_id)
    if str(connection.extra.get("ssl", "")).lower() in ("1", "true", "yes"):
        raise ValueError(f"connection {redis_conn_id!r}: ssl is not supported by Herald's Redis pub/sub trigger")
    db = connection.extra.get("db")
    if db is None and connection.schema and connection.schema.isdigit():
        db = connection.schema  # a Herald URL: redis://HOST:PORT/DB
    user = ""
    if connection.password:
        user = f"{quote(connection.login or '', safe='')}:{quote(connection.password, safe='')}@"
    port = connection.port or 6379
    host = connection.host or "127.0.0.1"
    url = f"redis+pubsub://{user}{host}:{port}/{int(db or 0)}?{urlencode({'channels': ','.join(names)})}"
    from herald.triggers.registry import trigger_class

    return trigger_class("redis+pubsub").from_url(url, apply_function=pubsub_event)


#: Airflow's name of the class in `airflow.providers.redis.triggers.redis_await_message`
AwaitMessageTrigger = RedisPubSubTrigger
