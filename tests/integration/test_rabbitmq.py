"""The delivery contract and RabbitMQ's own guarantees, against the RabbitMQ server on 127.0.0.1:5672."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, ClassVar

import aio_pika
import pytest

from herald.publishing import aclose_publishers, apublish
from herald.triggers import rabbitmq
from herald.triggers.base import BaseEventTrigger, Message, publishers
from herald.triggers.rabbitmq import RabbitMQTrigger
from tests.conftest import require_service, require_tool
from tests.integration.contract import BrokerCase, ContractSuite, run
from tests.integration.harness import TriggererHarness

BROKER = "amqp://guest:guest@127.0.0.1:5672/%2F"


class RabbitMQCase(BrokerCase):
    broker: ClassVar[str] = "rabbitmq"

    #: why the contract's broker restart test does not apply
    no_restart: ClassVar[str] = (
        "the machine's one RabbitMQ serves every test; the server closing the connection is the reconnect test"
    )

    def require(self) -> None:
        require_service("RabbitMQ", "127.0.0.1", 5672)

    async def kill_connection(self, trigger: BaseEventTrigger, during: Callable[[], Awaitable[None]]) -> None:
        assert isinstance(trigger, RabbitMQTrigger)
        await asyncio.to_thread(close_connection_from_server, f"herald {trigger.queue}")
        await during()

    def url(self, name: str) -> str:
        return f"{BROKER}?queue={name}"

    async def cleanup(self, url: str) -> None:
        await aclose_publishers()
        connection = await aio_pika.connect(BROKER)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(RabbitMQTrigger(url).queue)


class TestRabbitMQContract(ContractSuite):
    case = RabbitMQCase()


# -- RabbitMQ's own guarantees -----------------------------------------------------------


@pytest.fixture
def url() -> str:
    RabbitMQCase().require()
    return RabbitMQCase().url(f"herald-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def harness(tmp_path: Any) -> Any:
    RabbitMQCase().require()
    h = TriggererHarness(f"sqlite:///{tmp_path}/herald.db")
    yield h
    h.close()


async def receive_until(trigger: RabbitMQTrigger, count: int) -> list[Message]:
    """Receive until `count` messages came (a receive returns what has arrived so far)."""
    got: list[Message] = []
    while len(got) < count:
        got += await asyncio.wait_for(trigger.receive(500), 30)
    return got


def close_connection_from_server(name: str) -> None:
    """Have RabbitMQ itself close the connection whose client-given name is `name`."""
    require_tool("rabbitmqctl", "it closes a connection from the server side (it comes with rabbitmq-server)")
    listing = subprocess.run(
        ["rabbitmqctl", "--quiet", "--no-table-headers", "list_connections", "pid", "client_properties"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # One line per connection: the Erlang pid, a tab, the client properties as Erlang terms.
    pids = [line.split("\t", 1)[0] for line in listing.stdout.splitlines() if f'{{"connection_name","{name}"}}' in line]
    assert pids, f"no connection named {name!r}"
    for pid in pids:
        subprocess.run(
            ["rabbitmqctl", "--quiet", "close_connection", pid, "herald reconnect test"],
            check=True,
            capture_output=True,
            timeout=60,
        )


def test_redelivery_keeps_the_message_id_as_dedupe_key(url: str) -> None:
    async def scenario() -> None:
        trigger = RabbitMQTrigger(url)
        await trigger.open()
        await apublish(url, b"hello", {"source": "test"})
        (first,) = await receive_until(trigger, 1)
        await trigger.close()  # no ack: the broker requeues it
        await trigger.open()
        (again,) = await receive_until(trigger, 1)
        await trigger.ack([again])
        await trigger.close()
        await RabbitMQCase().cleanup(url)
        assert first.metadata["redelivered"] is False
        assert again.metadata["redelivered"] is True
        assert again.dedupe_key == first.dedupe_key == f"{trigger.queue}|{first.metadata['message_id']}"
        assert again.headers == {"source": "test"}
        assert again.metadata["published_at"]

    run(scenario)


def test_ack_acknowledges_only_the_messages_given(url: str) -> None:
    async def scenario() -> None:
        trigger = RabbitMQTrigger(url)
        await trigger.open()
        for n in range(4):
            await apublish(url, str(n).encode())
        got = await receive_until(trigger, 4)
        # The second and the fourth are committed, the first and third not (yet).
        await trigger.ack([got[1], got[3]])
        await trigger.close()
        await trigger.open()
        again = await receive_until(trigger, 2)
        await trigger.ack(again)
        await trigger.close()
        # After a complete ack nothing comes back.
        await trigger.open()
        leftover = await trigger.lag()
        await trigger.close()
        await RabbitMQCase().cleanup(url)
        assert sorted(m.body for m in again) == [b"0", b"2"]
        assert leftover == 0

    run(scenario)


def test_contiguous_batches_are_acknowledged_across_several_receives(url: str) -> None:
    async def scenario() -> None:
        trigger = RabbitMQTrigger(url)
        await trigger.open()
        for n in range(6):
            await apublish(url, str(n).encode())
        got = await receive_until(trigger, 6)
        await trigger.ack(got[:2])
        await trigger.ack(got[2:6])
        await trigger.close()
        await trigger.open()
        lag = await trigger.lag()
        await trigger.close()
        await RabbitMQCase().cleanup(url)
        assert [m.body for m in got] == [str(n).encode() for n in range(6)]
        assert lag == 0

    run(scenario)


def test_prefetch_bounds_what_is_delivered_and_lag_counts_the_rest(url: str) -> None:
    async def scenario() -> None:
        trigger = RabbitMQTrigger(url, prefetch=2)
        await trigger.open()
        for n in range(5):
            await apublish(url, str(n).encode())
        got = await receive_until(trigger, 2)
        await asyncio.sleep(0.3)  # a third delivery, if the broker broke prefetch, would be here by now
        more = [] if trigger._buffer is None or trigger._buffer.empty() else await trigger.receive(500)
        lag = await trigger.lag()
        await trigger.ack(got + more)
        await trigger.close()
        await RabbitMQCase().cleanup(url)
        assert len(got) == 2
        assert more == []
        assert lag == 3

    run(scenario)


def test_existing_queue_is_used_as_it_is_with_declare_false(url: str) -> None:
    name = RabbitMQTrigger(url).queue

    async def scenario() -> None:
        # A queue declared elsewhere, with arguments a plain durable declare would contradict
        connection = await aio_pika.connect(BROKER)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        existing = f"{url}&declare=false"
        trigger = RabbitMQTrigger(existing)
        await trigger.open()
        await apublish(existing, b"into the quorum queue")
        (message,) = await receive_until(trigger, 1)
        await trigger.ack([message])
        await trigger.close()
        await RabbitMQCase().cleanup(url)
        assert message.body == b"into the quorum queue"

    run(scenario)


def test_declare_false_on_a_missing_queue_fails_to_open(url: str) -> None:
    async def scenario() -> None:
        trigger = RabbitMQTrigger(f"{url}&declare=false")
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
            await trigger.open()
        await trigger.close()

    run(scenario)


def test_message_without_message_id_gets_a_key_per_delivery_or_a_body_hash() -> None:
    # aiormq gives every message it publishes a message_id, so a delivery without
    # one (from another client library) is built here by hand.
    def delivery() -> Any:
        return SimpleNamespace(
            body=b"same",
            headers={"raw": b"bytes"},
            message_id=None,
            exchange="",
            routing_key="q",
            redelivered=False,
            timestamp=None,
            delivery_tag=1,
        )

    default = RabbitMQTrigger(f"{BROKER}?queue=q")
    by_body = RabbitMQTrigger(f"{BROKER}?queue=q&dedupe=body")
    twins = [default._message(delivery()) for _ in range(2)]
    hashed = [by_body._message(delivery()) for _ in range(2)]
    assert twins[0].dedupe_key != twins[1].dedupe_key
    assert hashed[0].dedupe_key == hashed[1].dedupe_key
    assert hashed[0].dedupe_key.startswith("q|sha256:")
    assert twins[0].headers == {"raw": "bytes"}
    assert "message_id" not in twins[0].metadata


def test_a_deleted_queue_makes_receive_fail_instead_of_waiting_forever(url: str) -> None:
    async def scenario() -> None:
        trigger = RabbitMQTrigger(url)
        await trigger.open()
        await RabbitMQCase().cleanup(url)  # deletes the queue under the consumer
        with pytest.raises(ConnectionError, match="cancelled the consumer"):
            await asyncio.wait_for(trigger.receive(500), 30)
        await trigger.close()

    run(scenario)


def test_publish_reuses_one_connection_and_describe_masks_the_password(url: str) -> None:
    async def scenario() -> None:
        await apublish(url, b"1")
        first = publishers.held()
        await apublish(url, b"2")
        second = publishers.held()
        trigger = RabbitMQTrigger(url)
        await trigger.open()
        got = await receive_until(trigger, 2)
        await trigger.ack(got)
        await trigger.close()
        await RabbitMQCase().cleanup(url)
        assert len(first) == 1 and first == second
        assert [m.body for m in got] == [b"1", b"2"]
        assert all(m.metadata["message_id"] for m in got)
        described = trigger.describe()
        assert "guest:guest" not in described["url"] and described["broker"] == "rabbitmq"

    run(scenario)


def test_connection_from_herald_conn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_CONN_RABBIT", "amqp://user:secret@broker.example:5673/prod")
    trigger = RabbitMQTrigger.from_url("amqp://_/prod?queue=orders&prefetch=10", conn_id="rabbit")
    assert trigger.queue == "orders" and trigger.prefetch == 10 and trigger.vhost == "prod"
    assert rabbitmq.connection_url(trigger.url) == "amqp://user:secret@broker.example:5673/prod"
    assert "secret" not in json.dumps(trigger.describe())
