"""The delivery contract on Redis Streams, and what is special to them: XAUTOCLAIM, reconnects, lag."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import redis.asyncio as aioredis

from herald.triggers import redis_streams
from herald.triggers.base import Message
from herald.triggers.redis_streams import RedisStreamTrigger
from tests.conftest import reachable, require_service, require_tool
from tests.integration.contract import BrokerCase, ContractSuite, run
from tests.integration.harness import TriggererHarness

REDIS = "redis://127.0.0.1:6379/0"


class RedisCase(BrokerCase):
    broker: ClassVar[str] = "redis"
    # Short blocking reads keep each test's shutdown quick; behaviour is the same.
    options: ClassVar[dict[str, Any]] = {"block_ms": 500}

    def require(self) -> None:
        require_service("Redis", "127.0.0.1", 6379)

    def url(self, name: str) -> str:
        return f"{REDIS}?stream={name}&group=herald"

    async def cleanup(self, url: str) -> None:
        stream = RedisStreamTrigger.from_url(url).stream
        client = aioredis.Redis.from_url(REDIS)
        try:
            await client.delete(stream)
        finally:
            await client.aclose()
        await redis_streams.close_publishers()


class TestRedisStreamsContract(ContractSuite):
    case = RedisCase()


@pytest.fixture
def stream() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return f"herald-{uuid.uuid4().hex[:10]}"


async def _drop(stream: str) -> None:
    client = aioredis.Redis.from_url(REDIS)
    try:
        await client.delete(stream)
    finally:
        await client.aclose()
    await redis_streams.close_publishers()


async def _receive(trigger: RedisStreamTrigger, count: int, attempts: int = 40) -> list[Message]:
    got: list[Message] = []
    for _ in range(attempts):
        got += await trigger.receive(100)
        if len(got) >= count:
            break
    return got


def test_entries_left_pending_by_a_dead_consumer_are_claimed(stream: str) -> None:
    url = f"{REDIS}?stream={stream}&group=g"

    async def scenario() -> None:
        dead = RedisStreamTrigger.from_url(url, consumer="dead", block_ms=200)
        await dead.open()
        for n in range(3):
            await redis_streams.publish(url, f'{{"n": {n}}}'.encode())
        taken = await _receive(dead, 3)
        assert len(taken) == 3
        # Given a consumer that read three entries and died without acknowledging them
        await dead.close()

        # When another consumer of the group opens with a short claim_idle_ms
        alive = RedisStreamTrigger.from_url(url, consumer="alive", block_ms=200, claim_idle_ms=100)
        await alive.open()
        claimed = await _receive(alive, 3)
        # Then it gets the very same entries, with the same dedupe keys
        assert sorted(m.dedupe_key for m in claimed) == sorted(m.dedupe_key for m in taken)
        await alive.ack(claimed)
        assert await alive.lag() == 0

        # And also while it runs: a second consumer dies with an entry in hand
        await redis_streams.publish(url, b'{"n": 3}')
        other = RedisStreamTrigger.from_url(url, consumer="dead-2", block_ms=200)
        await other.open()
        lost = await _receive(other, 1)
        await other.close()
        assert [m.json() for m in lost] == [{"n": 3}]
        reclaimed = await _receive(alive, 1, attempts=100)
        assert [m.dedupe_key for m in reclaimed] == [lost[0].dedupe_key]
        await alive.ack(reclaimed)
        await alive.close()
        await _drop(stream)

    run(scenario)


def test_own_pending_entries_are_reread_after_reopen(stream: str) -> None:
    url = f"{REDIS}?stream={stream}&group=g&consumer=me&block_ms=200"

    async def scenario() -> None:
        trigger = RedisStreamTrigger.from_url(url)
        await trigger.open()
        await redis_streams.publish(url, b"one", {"h": "1"})
        first = await _receive(trigger, 1)
        await trigger.close()
        # the claim_idle_ms default (30 s) is far away: this is the consumer's own re-read
        await trigger.open()
        again = await _receive(trigger, 1)
        assert [(m.dedupe_key, m.body, m.headers) for m in again] == [(first[0].dedupe_key, b"one", {"h": "1"})]
        assert again[0].metadata["stream"] == stream
        await trigger.ack(again)
        await trigger.close()
        await trigger.open()
        assert await trigger.receive(10) == []
        await trigger.close()
        await _drop(stream)

    run(scenario)


def test_lag_counts_pending_and_undelivered(stream: str) -> None:
    url = f"{REDIS}?stream={stream}&group=g&consumer=me&block_ms=200"

    async def scenario() -> None:
        trigger = RedisStreamTrigger.from_url(url)
        await trigger.open()
        for n in range(5):
            await redis_streams.publish(url, str(n).encode())
        assert await trigger.lag() == 5
        batch = await trigger.receive(2)
        assert len(batch) == 2
        assert await trigger.lag() == 5  # two pending + three not delivered
        await trigger.ack(batch)
        assert await trigger.lag() == 3
        await trigger.close()
        await _drop(stream)

    run(scenario)


def test_entry_without_body_field_and_maxlen(stream: str) -> None:
    url = f"{REDIS}?stream={stream}&group=g&consumer=me&block_ms=200"

    async def scenario() -> None:
        client = aioredis.Redis.from_url(REDIS)
        trigger = RedisStreamTrigger.from_url(url)
        await trigger.open()
        await client.xadd(stream, {"sensor": "7", "temp": "21.5"})
        [message] = await _receive(trigger, 1)
        assert message.json() == {"sensor": "7", "temp": "21.5"}
        await trigger.ack([message])
        for n in range(300):
            await redis_streams.publish(f"{url}&maxlen=10", str(n).encode())
        assert await client.xlen(stream) < 300
        await trigger.close()
        await client.aclose()
        await _drop(stream)

    run(scenario)


def test_watcher_resumes_after_its_connection_is_killed(tmp_path: Any, stream: str) -> None:
    url = f"{REDIS}?stream={stream}&group=g&block_ms=500"
    harness = TriggererHarness(f"sqlite:///{tmp_path}/herald.db")
    trigger = RedisStreamTrigger.from_url(url)

    async def kill_trigger_connections() -> int:
        admin = aioredis.Redis.from_url(REDIS)
        try:
            clients = await admin.client_list()
            ids = [c["id"] for c in clients if c.get("name") == trigger.client_name]
            for client_id in ids:
                await admin.client_kill_filter(_id=client_id)
            return len(ids)
        finally:
            await admin.aclose()

    async def scenario() -> None:
        await harness.start(("readings", trigger))
        await redis_streams.publish(url, b'{"n": 1}')
        await harness.wait_events(1)
        # When the broker drops the trigger's connection (only this test's, by its client name)
        assert await kill_trigger_connections() >= 1
        for n in range(2, 6):
            await redis_streams.publish(url, f'{{"n": {n}}}'.encode())
        # Then the watcher reconnects, shows the error it had, and loses nothing
        await harness.wait_events(5, timeout=60)
        await harness.wait_for(lambda: harness.watchers()[0]["state"] == "running", what="state running")
        await harness.settle(0.5)
        await harness.stop()
        await _drop(stream)
        assert sorted(e["payload"]["n"] for e in harness.events()) == [1, 2, 3, 4, 5]
        assert "Connection" in (harness.watchers()[0]["last_error"] or "")

    try:
        run(scenario)
    finally:
        harness.close()


def test_describe_masks_password_and_conn_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_CONN_CACHE", "redis://:s3cret@127.0.0.1:6379/2?block_ms=100")
    trigger = RedisStreamTrigger.from_url("redis://_/?stream=s&group=g", conn_id="cache")
    described = trigger.describe()
    assert "s3cret" not in str(described)
    assert described["stream"] == "s" and described["block_ms"] == 100
    assert trigger.url.startswith("redis://:s3cret@127.0.0.1:6379")


def test_consumer_name_is_per_process_and_not_described() -> None:
    trigger = RedisStreamTrigger.from_url(f"{REDIS}?stream=s&group=g")
    assert trigger.consumer == redis_streams.default_consumer_name()
    assert "consumer" not in trigger.describe()
    assert RedisStreamTrigger.from_url(f"{REDIS}?stream=s&group=g&consumer=c").describe()["consumer"] == "c"


# -- a broker of the test's own, to stop and restart ---------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrivateRedis:
    """A redis-server on 127.0.0.1 with an fsync'd append-only file, that a test may stop."""

    def __init__(self, data: Path) -> None:
        self.port = _free_port()
        self.data = data
        self.data.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not reachable("127.0.0.1", self.port, timeout=0.5):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the private redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    require_tool("redis-server", "the restart test runs a private server (make services installs it)")
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_watcher_resumes_after_the_broker_restarts(tmp_path: Path, private_redis: PrivateRedis) -> None:
    url = f"{private_redis.url}?stream=sensors&group=herald&block_ms=500"
    harness = TriggererHarness(f"sqlite:///{tmp_path}/herald.db")

    async def scenario() -> None:
        await harness.start(("readings", RedisStreamTrigger.from_url(url)))
        await redis_streams.publish(url, b'{"n": 1}')
        await harness.wait_events(1, timeout=30)
        await redis_streams.close_publishers()

        # When the broker stops, the watcher says so rather than stopping silently
        await asyncio.to_thread(private_redis.stop)
        await harness.wait_for(
            lambda: harness.watchers()[0]["state"] == "reconnecting", timeout=30, what="state reconnecting"
        )
        # and when it comes back (from its append-only file), the watcher resumes and loses nothing
        await asyncio.to_thread(private_redis.start)
        for n in range(2, 5):
            await redis_streams.publish(url, f'{{"n": {n}}}'.encode())
        await harness.wait_events(4, timeout=60)
        await harness.wait_for(lambda: harness.watchers()[0]["state"] == "running", what="state running")
        await harness.settle(0.5)
        await harness.stop()
        await redis_streams.close_publishers()
        assert sorted(e["payload"]["n"] for e in harness.events()) == [1, 2, 3, 4]

    try:
        run(scenario)
    finally:
        harness.close()
