"""Every publisher honours `conn_id` and shares one connection between URLs that differ only in options."""

from __future__ import annotations

import pytest

from herald.triggers.registry import BUILTIN, publisher_class

CASES = {
    # scheme: (URL naming the connection, the connection's URL, what the resolved key must hold)
    "redis": ("redis://_/0?stream=s&conn_id=box", "redis://:pw@10.0.0.7:6380/0", "10.0.0.7:6380"),
    "postgres": ("postgres://_/q?table=t&conn_id=box", "postgresql://u:pw@10.0.0.7:5433/q", "10.0.0.7:5433"),
    "nats": ("nats://_/orders?stream=o&conn_id=box", "nats://u:pw@10.0.0.7:4223", "10.0.0.7:4223"),
    "amqp": ("amqp://_/%2F?queue=q&conn_id=box", "amqp://u:pw@10.0.0.7:5673/%2F", "10.0.0.7:5673"),
    "mqtt": ("mqtt://_/plant/temp?conn_id=box", "mqtt://u:pw@10.0.0.7:1884", "10.0.0.7:1884"),
    "kafka": ("kafka://_/orders?conn_id=box", "kafka://10.0.0.7:9093", "10.0.0.7:9093"),
    "sqs": ("sqs://_/000000000000/q?conn_id=box", "sqs+http://AK:SK@10.0.0.7:5005", "10.0.0.7:5005"),
}


@pytest.mark.parametrize("scheme", sorted(CASES))
def test_publisher_takes_host_and_credentials_from_conn_id(scheme: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url, connection, where = CASES[scheme]
    monkeypatch.setenv("HERALD_CONN_BOX", connection)
    cls = publisher_class(scheme)
    assert where in cls.pool_key(url)


def test_every_builtin_scheme_has_a_publisher_class() -> None:
    for scheme in BUILTIN:
        assert publisher_class(scheme).__name__.endswith("Publisher")


def test_options_in_the_query_share_one_connection() -> None:
    cls = publisher_class("redis")
    assert cls.pool_key("redis://h:6379/0?stream=a&maxlen=5") == cls.pool_key("redis://h:6379/0?stream=b")
