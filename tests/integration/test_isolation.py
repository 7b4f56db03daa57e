"""One hostile message never blocks its watcher (docs/adr/0004-isolation.md), on SQLite and PostgreSQL.

Through a real RabbitMQ: a `message_id` holding NUL, headers holding NUL, a
dedupe key longer than its column, and payloads that are not strict JSON. Each must end as one event or one dead
letter, and a well-formed message sent after them must still become an event
while the watcher stays `running` (no reconnect loop).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import aio_pika
import pytest

from herald.triggers.rabbitmq import RabbitMQTrigger
from tests.conftest import require_service
from tests.integration.harness import TriggererHarness

BROKER = "amqp://guest:guest@127.0.0.1:5672/%2F"


@pytest.fixture
def harness(database_url: str) -> Iterator[TriggererHarness]:
    require_service("RabbitMQ", "127.0.0.1", 5672)
    h = TriggererHarness(database_url)
    yield h
    h.close()


async def _publish(queue: str, messages: list[aio_pika.Message]) -> None:
    connection = await aio_pika.connect(BROKER)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True)
        for message in messages:
            await channel.default_exchange.publish(message, routing_key=queue)


async def _delete(queue: str) -> None:
    connection = await aio_pika.connect(BROKER)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)


def test_nul_in_message_id_and_headers_and_non_json_payloads_never_block_the_watcher(
    harness: TriggererHarness,
) -> None:
    # a queue name near AMQP's 255 limit: with a long message_id its dedupe key passes the column's 500
    queue = f"herald-isolation-{uuid.uuid4().hex[:10]}".ljust(250, "q")

    async def scenario() -> None:
        await harness.start(("orders", RabbitMQTrigger(f"{BROKER}?queue={queue}")))
        try:
            await _publish(
                queue,
                [
                    aio_pika.Message(b'{"n": 1}', message_id="id\x00one", headers={"h": "a\x00b"}),
                    aio_pika.Message(b'{"v": NaN}', message_id="nan"),
                    aio_pika.Message(b'{"s": "\\ud800"}', message_id="surrogate"),
                    aio_pika.Message(b"[" * 100 + b"]" * 100, message_id="deep"),
                    aio_pika.Message(b'{"n": 2}', message_id="after"),
                    aio_pika.Message(b'{"n": 3}', message_id="long".ljust(255, "x")),
                ],
            )
            await harness.wait_received(6)
        finally:
            await harness.stop()
            await _delete(queue)

    asyncio.run(scenario())

    events = harness.events("orders")
    assert [e["payload"] for e in events] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert len(events[2]["message"]["dedupe_key"]) == 500  # shortened with a hash, not refused by the column
    first: dict[str, Any] = events[0]["message"]
    assert first["dedupe_key"].endswith("id\ufffdone")  # stored sanitised, still one key per message
    assert first["headers"]["h"] == "a\ufffdb"
    reasons = {d["dedupe_key"].rsplit("|", 1)[-1]: d["error"] for d in harness.dead_letters()}
    assert set(reasons) == {"nan", "surrogate", "deep"}
    assert "not JSON" in reasons["nan"]
    assert "lone surrogate" in reasons["surrogate"]
    assert "nested more than 64 levels deep" in reasons["deep"]
    watcher = harness.watchers()[0]
    assert watcher["last_error"] is None  # never went through a reconnect


def test_a_message_the_database_refuses_is_a_dead_letter_and_the_rest_of_its_batch_is_stored(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever else a database may refuse in one row (a limit no check knows yet), the watcher goes on."""
    from sqlalchemy.exc import DataError

    from herald.config import Settings
    from herald.publishing import local_publish
    from herald.store import events
    from herald.triggers.local import LocalQueueTrigger

    real = events.record_batch

    def refusing(conn: Any, outcomes: Any, *args: Any) -> Any:
        if any(o.kind == "event" and o.payload == {"poison": True} for o in outcomes):
            raise DataError("INSERT INTO asset_event ...", {}, Exception("value refused by the database"))
        return real(conn, outcomes, *args)

    monkeypatch.setattr(events, "record_batch", refusing)
    harness = TriggererHarness(database_url)
    settings = Settings(database_url=harness.url)

    async def scenario() -> None:
        await harness.start(("orders", LocalQueueTrigger("local://refused")))
        bodies = [b'{"n": 1}', b'{"poison": true}', b'{"n": 2}']
        await asyncio.to_thread(local_publish, "refused", bodies, None, settings=settings)
        await harness.wait_received(3)
        await harness.stop()

    try:
        asyncio.run(scenario())
        assert [e["payload"] for e in harness.events("orders")] == [{"n": 1}, {"n": 2}]
        [letter] = harness.dead_letters()
        assert bytes(letter["body"]) == b'{"poison": true}'
        assert "the database refused the message: DataError" in letter["error"]
        assert harness.watchers()[0]["last_error"] is None
    finally:
        harness.close()
