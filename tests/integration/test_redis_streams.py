"""The delivery contract on Redis Streams, and what is special to them: XAUTOCLAIM, reconnects, lag."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
import redis.asyncio as aioredis

from herald.publishing import aclose_publishers, apublish
from herald.triggers import redis_streams
from herald.triggers.base import BaseEventTrigger, Message
from herald.triggers.redis_streams import RedisStreamTrigger
from tests.conftest import reachable, require_service, require_tool
from tests.integration.contract import BrokerCase, ContractSuite, run

REDIS = "redis://127.0.0.1:6379/0"


class RedisCase(BrokerCase):
    broker: ClassVar[str] = "redis"
    # Short blocking reads keep each test's shutdown quick; behaviour is the same.
    options: ClassVar[dict[str, Any]] = {"block_ms": 500}

    def require(self) -> None:
        require_service("Redis", "127.0.0.1", 6379)

    async def kill_connection(self, trigger: BaseEventTrigger, during: Callable[[], Awaitable[None]]) -> None:
        assert isinstance(trigger, RedisStreamTrigger)
        admin = aioredis.Redis.from_url(REDIS)
        try:
            clients = await admin.client_list()
            ids = [c["id"] for c in clients if c.get("name") == trigger.client_name]
            assert ids, "the trigger had no connection to kill"
            for client_id in ids:
                await admin.client_kill_filter(_id=client_id)
        finally:
            await admin.aclose()
        await during()

    def url(self, name: str) -> str:
        return f"{REDIS}?stream={name}&group=herald"

    def private_broker(self, tmp_path: Path) -> PrivateRedis:
        require_tool("redis-server", "the restart test runs a private server (make services installs it)")
        server = PrivateRedis(tmp_path / "redis")
        server.start()
        return server

    async def cleanup(self, url: str) -> None:
        stream = RedisStreamTrigger.from_url(url).stream
        client = aioredis.Redis.from_url(REDIS)
        try:
            await client.delete(stream)
        finally:
            await client.aclose()
        await aclose_publishers()


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
    await aclose_publishers()


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
            await apublish(url, f'{{"n": {n}}}'.encode())
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
        await apublish(url, b'{"n": 3}')
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
        await apublish(url, b"one", {"h": "1"})
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
            await apublish(url, str(n).encode())
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
            await apublish(f"{url}&maxlen=10", str(n).encode())
        assert await client.xlen(stream) < 300
        await trigger.close()
        await client.aclose()
        await _drop(stream)

    run(scenario)


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


def test_a_quiet_stream_is_no_error_with_the_default_block(stream: str) -> None:
    # redis-py's own read timeout (5 s) equals the default BLOCK: each quiet poll failed
    # with "Timeout reading from 127.0.0.1:6379", which the watcher showed as its error
    url = f"{REDIS}?stream={stream}&group=g&consumer=me"

    async def scenario() -> None:
        trigger = RedisStreamTrigger.from_url(url)
        assert trigger.block_ms == redis_streams.DEFAULT_BLOCK_MS
        await trigger.open()
        try:
            assert await trigger.receive(10) == []
            await apublish(url, b"after the quiet")
            assert [m.body for m in await _receive(trigger, 1)] == [b"after the quiet"]
        finally:
            await trigger.close()
            await _drop(stream)

    run(scenario)


def test_a_socket_timeout_shorter_than_the_block_is_refused() -> None:
    with pytest.raises(ValueError, match="socket_timeout=2 is not longer than block_ms=30000"):
        RedisStreamTrigger.from_url(f"{REDIS}?stream=s&group=g&socket_timeout=2")
    assert RedisStreamTrigger.from_url(f"{REDIS}?stream=s&group=g&socket_timeout=2&block_ms=1000").block_ms == 1000


def test_the_shown_url_keeps_the_stream_and_group_and_hides_the_password() -> None:
    trigger = RedisStreamTrigger.from_url("redis://:s3cret@127.0.0.1:6379/0?stream=orders&group=g&block_ms=100")
    assert trigger.describe()["url"] == "redis://:***@127.0.0.1:6379/0?stream=orders&group=g"


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

    def queue_url(self, name: str) -> str:
        return f"{self.url}?stream={name}&group=herald&block_ms=500"

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
