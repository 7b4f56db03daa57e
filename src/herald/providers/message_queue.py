"""Airflow's `MessageQueueTrigger(queue=...)` and `MessageQueueTrigger(scheme=...)`, dispatched to the providers."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from herald.triggers.base import BaseEventTrigger

#: the schemes Airflow's providers serve, and the trigger for each
SCHEMES = ("sqs", "kafka", "redis+pubsub")
# The queue URL as AWS shows it (what Airflow's SQS provider matches), or Herald's own SQS forms.
_SQS_QUEUE = re.compile(r"^(https://sqs\.[^.]+\.amazonaws\.com(\.cn)?/[0-9]+/.+|sqs(\+https?)?://.+)$")


def is_airflow_queue(queue: str) -> bool:
    """True when `queue=` names a queue of an Airflow provider (SQS, Kafka, Redis pub/sub)."""
    return bool(_SQS_QUEUE.match(queue)) or queue.startswith(("kafka://", "redis+pubsub://"))


def airflow_message_queue_trigger(
    *, queue: str | None = None, scheme: str | None = None, trigger_queue: str | None = None, **kwargs: Any
) -> BaseEventTrigger:
    """The trigger Airflow's `MessageQueueTrigger` builds, with Airflow's payload shapes.

    `trigger_queue` (which triggerers may run it) is accepted: every Herald
    triggerer may run every watcher.
    """
    compat = kwargs.pop("airflow_compat", True)
    if compat is not True:
        raise ValueError(
            "airflow_compat=False: the Airflow spelling always gives Airflow's payload; "
            "write MessageQueueTrigger(URL) for Herald's decoded payload"
        )
    if queue is None and scheme is None:
        raise ValueError("Either `queue` or `scheme` parameter must be provided.")
    if queue is not None:
        return _from_queue(queue, kwargs)
    assert scheme is not None
    if scheme == "sqs":
        from herald.providers.sqs import SqsSensorTrigger

        return SqsSensorTrigger(**kwargs)
    if scheme == "kafka":
        from herald.providers.kafka import AwaitMessageTrigger

        return AwaitMessageTrigger(**kwargs)
    if scheme == "redis+pubsub":
        from herald.providers.redis import RedisPubSubTrigger

        return RedisPubSubTrigger(**kwargs)
    raise ValueError(
        f"The scheme '{scheme}' is not recognized by any of the registered providers (known: {', '.join(SCHEMES)})."
    )


def _from_queue(queue: str, kwargs: dict[str, Any]) -> BaseEventTrigger:
    if _SQS_QUEUE.match(queue):
        from herald.providers.sqs import SqsSensorTrigger

        return SqsSensorTrigger(sqs_queue=queue, **kwargs)
    parts = urlsplit(queue)
    if parts.scheme == "kafka":
        from herald.providers.kafka import AwaitMessageTrigger

        if "apply_function" not in kwargs:
            raise ValueError("apply_function is required in KafkaMessageQueueProvider kwargs")
        raw_topics = parts.path.lstrip("/")
        if "topics" not in kwargs:
            if not raw_topics:
                raise ValueError(
                    "topics is required in KafkaMessageQueueProvider kwargs or provide them in the queue URI"
                )
            kwargs["topics"] = raw_topics.split(",")
        return AwaitMessageTrigger(queue=queue, **kwargs)
    if parts.scheme == "redis+pubsub":
        from herald.providers.redis import RedisPubSubTrigger

        channels = dict(parse_qsl(parts.query)).get("channels")
        if "channels" not in kwargs and channels:
            kwargs["channels"] = channels.split(",")
        return RedisPubSubTrigger(**kwargs)
    raise ValueError(f"The queue '{queue}' is not recognized by any of the registered providers.")
