"""A watcher's URL as shown: what it reads (stream, queue, table, channels) kept, credentials masked."""

from __future__ import annotations

import pytest

from herald.triggers.message_queue import MessageQueueTrigger
from herald.triggers.urls import shown_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "redis://:pw@127.0.0.1:6379/0?stream=orders&group=g&block_ms=100",
            "redis://:***@127.0.0.1:6379/0?stream=orders&group=g",
        ),
        ("redis+pubsub://:pw@127.0.0.1:6379/0?channels=a,b", "redis+pubsub://:***@127.0.0.1:6379/0?channels=a,b"),
        ("amqp://guest:pw@127.0.0.1:5672/%2F?queue=orders", "amqp://guest:***@127.0.0.1:5672/%2F?queue=orders"),
        ("postgres://u:pw@127.0.0.1/db?table=inbox", "postgresql://u:***@127.0.0.1/db?table=inbox"),
        ("nats://u:pw@127.0.0.1:4222/subj?stream=S&durable=d", "nats://u:***@127.0.0.1:4222/subj?stream=S"),
    ],
)
def test_a_watchers_url_keeps_what_it_reads(url: str, shown: str) -> None:
    assert MessageQueueTrigger(url).describe()["url"] == shown


def test_client_options_stay_and_secrets_in_them_are_masked() -> None:
    url = "redis://127.0.0.1:6379/0?socket_timeout=9&password=pw"
    assert shown_url(url, stream="s", group=None) == "redis://127.0.0.1:6379/0?stream=s&socket_timeout=9&password=***"
