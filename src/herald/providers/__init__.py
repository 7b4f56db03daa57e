"""Airflow's provider triggers by their Airflow names, built on Herald's brokers.

`MessageQueueTrigger(queue=...)` / `MessageQueueTrigger(scheme=...)` land here
(see `herald.triggers.message_queue`); each provider trigger takes exactly the
arguments of Airflow's, translates them into a Herald broker URL and options,
and gives Airflow's payload shape by its apply step. See docs/airflow-triggers.md.

Importing this package imports no broker client.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AwaitMessageTrigger", "KafkaMessageQueueTrigger", "RedisPubSubTrigger", "SqsSensorTrigger"]

_HOMES = {
    "SqsSensorTrigger": "herald.providers.sqs",
    "AwaitMessageTrigger": "herald.providers.kafka",  # the guide's; the Redis one is herald.providers.redis's
    "KafkaMessageQueueTrigger": "herald.providers.kafka",
    "RedisPubSubTrigger": "herald.providers.redis",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'herald.providers' has no attribute {name!r}")
