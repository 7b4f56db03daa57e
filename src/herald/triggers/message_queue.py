"""`MessageQueueTrigger`: picks the broker's trigger from the URL scheme."""

from __future__ import annotations

from typing import Any

from herald.triggers.base import BaseEventTrigger
from herald.triggers.registry import scheme_of, trigger_class


def MessageQueueTrigger(url: str | None = None, *, queue: str | None = None, **options: Any) -> BaseEventTrigger:
    """A trigger for the queue at `url`, of the class its scheme names.

    `MessageQueueTrigger("sqs+http://127.0.0.1:5005/000000000000/orders")` is an
    `SqsTrigger`; `queue=` is accepted as Airflow's name for the URL. Options are
    passed to the broker's trigger (`apply_function`, `filter`, `conn_id`...).
    """
    target = url if url is not None else queue
    if target is None:
        raise TypeError("MessageQueueTrigger needs the queue URL, e.g. MessageQueueTrigger('local://orders')")
    cls = trigger_class(scheme_of(target))
    return cls.from_url(target, **options)
