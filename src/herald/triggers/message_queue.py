"""`MessageQueueTrigger`: Herald's URL spelling, or Airflow's `queue=` / `scheme=` spelling.

- `MessageQueueTrigger("sqs+http://127.0.0.1:5005/000000000000/orders", **options)`:
  the trigger of the URL's scheme with Herald's options and its decoded payload.
- `MessageQueueTrigger(scheme="sqs", sqs_queue=..., aws_conn_id=...)` and
  `MessageQueueTrigger(queue="https://sqs.REGION.amazonaws.com/...")`: Airflow's
  provider arguments and payload shapes (`herald.providers`). A `queue=` that no
  Airflow provider serves (`local://`, `amqp://`...) is read as Herald's URL.
"""

from __future__ import annotations

from typing import Any

from herald.triggers.base import BaseEventTrigger
from herald.triggers.registry import scheme_of, trigger_class


def MessageQueueTrigger(
    url: str | None = None, *, queue: str | None = None, scheme: str | None = None, **options: Any
) -> BaseEventTrigger:
    """A trigger for the queue at `url`, of the class its scheme names; or Airflow's spelling.

    Args:
        url: Herald's queue URL; options go to the broker's trigger (`apply_function`, `filter`, `conn_id`...).
        queue: Airflow's (deprecated) queue URL.
        scheme: Airflow's provider scheme: `sqs`, `kafka` or `redis+pubsub`, with that provider's arguments.
    """
    if url is not None:
        if queue is not None or scheme is not None:
            raise TypeError("give the queue URL once: MessageQueueTrigger(url) or MessageQueueTrigger(queue=...)")
        return trigger_class(scheme_of(url)).from_url(url, **options)
    if queue is None and scheme is None:
        raise TypeError("MessageQueueTrigger needs the queue URL, e.g. MessageQueueTrigger('local://orders')")
    from herald.providers.message_queue import airflow_message_queue_trigger, is_airflow_queue

    if scheme is None and queue is not None and not is_airflow_queue(queue):
        return trigger_class(scheme_of(queue)).from_url(queue, **options)
    return airflow_message_queue_trigger(queue=queue, scheme=scheme, **options)
