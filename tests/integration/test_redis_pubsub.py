"""Redis pub/sub (`redis+pubsub://`) against the real Redis: the delivery contract where pub/sub allows it.

Pub/sub keeps nothing: a message published while no subscriber is connected
is gone, and Redis forgets a message once it has pushed it, before Herald
commits its event. There is no redelivery to test, so the contract's two
crash tests (which need the broker to deliver again after a reconnect) are
skipped here, with that reason; the others run. Publishing waits until Redis
reports the watcher subscribed, since a message published before that
reaches nobody, by design.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, ClassVar

import pytest
import redis.asyncio as aioredis

from herald import MessageQueueTrigger
from herald.publishing import aclose_publishers, apublish
from herald.triggers.redis_pubsub import RedisPubSubTrigger
from tests.conftest import require_service
from tests.integration.contract import BrokerCase, ContractSuite, run
from tests.integration.harness import TriggererHarness

REDIS = "redis://127.0.0.1:6379/0"


async def wait_subscribed(channel: str, timeout: float = 20.0) -> None:
    """Wait until some client subscribes to `channel` (PUBSUB NUMSUB), the moment publishing reaches it."""
    client = aioredis.Redis.from_url(REDIS)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            counts = dict(await client.pubsub_numsub(channel))
            if counts.get(channel.encode(), 0) > 0:
                return
            if loop.time() > deadline:
                raise AssertionError(f"nobody subscribed to {channel!r} within {timeout}s")
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()


class RedisPubSubCase(BrokerCase):
    broker: ClassVar[str] = "redis+pubsub"
    headers: ClassVar[bool] = False  # pub/sub messages have no headers
    options: ClassVar[dict[str, Any]] = {"block_ms": 300}
    #: why the contract's reconnect and broker restart tests do not apply
    no_kill_connection: ClassVar[str] = (
        "Redis pub/sub keeps nothing for a subscriber that is away: what is published while the "
        "connection is down is lost by design (at most once), so 'loses nothing' cannot hold"
    )
    no_restart: ClassVar[str] = no_kill_connection

    def require(self) -> None:
        require_service("Redis", "127.0.0.1", 6379)

    def url(self, name: str) -> str:
        return f"redis+pubsub://127.0.0.1:6379/0?channels={name}"

    async def publish(self, url: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        await wait_subscribed(RedisPubSubTrigger.from_url(url).channels[0])
        await apublish(url, body, headers)

    async def cleanup(self, url: str) -> None:
        await aclose_publishers()


_NO_REDELIVERY = (
    "Redis pub/sub keeps no message: one pushed to a subscriber whose consumer then reconnects (after a "
    "crash before or after the commit) is gone, so there is no redelivery to test (at most once, said in describe())"
)


class TestRedisPubSubContract(ContractSuite):
    case = RedisPubSubCase()

    def test_crash_after_commit_before_ack_makes_no_duplicate(self, harness: TriggererHarness, url: str) -> None:
        pytest.skip(_NO_REDELIVERY)

    def test_crash_before_commit_redelivers(self, harness: TriggererHarness, url: str) -> None:
        pytest.skip(_NO_REDELIVERY)

    def test_unacknowledged_messages_come_back_with_the_same_dedupe_keys(self, url: str) -> None:
        pytest.skip(_NO_REDELIVERY)


@pytest.fixture
def channel() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return f"herald-{uuid.uuid4().hex[:10]}"


def test_airflow_spelling_gives_airflows_message_shape(
    tmp_path: Any, channel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_REDIS_DEFAULT", json.dumps({"conn_type": "redis", "host": "127.0.0.1", "port": 6379})
    )
    harness = TriggererHarness(f"sqlite:///{tmp_path}/herald.db")
    trigger = MessageQueueTrigger(scheme="redis+pubsub", channels=[channel])

    async def scenario() -> None:
        await harness.start(("redis_asset", trigger))
        await wait_subscribed(channel)
        client = aioredis.Redis.from_url(REDIS)
        try:
            await client.publish(channel, "first")
            await client.publish(channel, json.dumps({"n": 2}))
        finally:
            await client.aclose()
        await harness.wait_events(2)
        await harness.stop()

    try:
        run(scenario, harness)
        payloads = [e["payload"] for e in harness.events()]
        assert payloads == [
            {"type": "message", "pattern": None, "channel": channel, "data": "first"},
            {"type": "message", "pattern": None, "channel": channel, "data": '{"n": 2}'},
        ]
        assert "at most once" in harness.watchers()[0]["trigger"]["delivery"]
    finally:
        harness.close()


def test_one_trigger_receives_every_channel_and_publish_reaches_all(tmp_path: Any, channel: str) -> None:
    other = f"{channel}-b"
    url = f"redis+pubsub://127.0.0.1:6379/0?channels={channel},{other}"
    harness = TriggererHarness(f"sqlite:///{tmp_path}/herald.db")

    async def scenario() -> None:
        await harness.start(("both", MessageQueueTrigger(url, block_ms=300)))
        await wait_subscribed(channel)
        await wait_subscribed(other)
        await apublish(url, b'{"to": "both"}')  # PUBLISH to each channel of the URL
        await harness.wait_events(2)
        await harness.stop()
        await aclose_publishers()

    try:
        run(scenario, harness)
        events = harness.events()
        assert sorted(e["message"]["channel"] for e in events) == sorted([channel, other])
        assert all(e["payload"] == {"to": "both"} for e in events)
        assert len({e["message"]["dedupe_key"] for e in events}) == 2
    finally:
        harness.close()


def test_headers_are_refused_by_the_publisher() -> None:
    with pytest.raises(ValueError, match="no headers"):
        asyncio.run(apublish("redis+pubsub://127.0.0.1:6379/0?channels=x", b"b", {"h": "v"}))
