"""The one pool of publishers: reuse per key and loop, reconnect after a failure, one close path."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from herald.sdk.triggers import Publisher
from herald.triggers.base import PublisherPool


class FakePublisher(Publisher):
    opened: ClassVar[list[FakePublisher]] = []

    @classmethod
    def pool_key(cls, url: str) -> str:
        return url.partition("?")[0]  # options in the query share the connection

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.sent: list[bytes] = []
        self.closed = False
        self.fail_next = False

    async def open(self) -> None:
        await asyncio.sleep(0)  # a concurrent first call must not open a second one
        FakePublisher.opened.append(self)

    async def publish(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        if self.fail_next:
            raise ConnectionError("gone")
        self.sent.append(body)

    async def close(self) -> None:
        self.closed = True


def test_one_publisher_per_key_reconnects_after_a_failure_and_closes_once() -> None:
    pool = PublisherPool()
    FakePublisher.opened.clear()

    async def scenario() -> None:
        await asyncio.gather(*(pool.publish(FakePublisher, "fake://a?x=1", b"n", {}) for _ in range(10)))
        await pool.publish(FakePublisher, "fake://a?x=2", b"m", {})
        assert len(FakePublisher.opened) == 1 and len(FakePublisher.opened[0].sent) == 11
        await pool.publish(FakePublisher, "fake://b", b"other", {})
        assert len(pool.held()) == 2
        first = FakePublisher.opened[0]
        first.fail_next = True
        with pytest.raises(ConnectionError):
            await pool.publish(FakePublisher, "fake://a", b"lost", {})
        assert first.closed  # dropped, so the next call reconnects
        await pool.publish(FakePublisher, "fake://a", b"again", {})
        assert len(FakePublisher.opened) == 3 and FakePublisher.opened[2].sent == [b"again"]
        await pool.aclose()
        assert pool.held() == [] and all(p.closed for p in FakePublisher.opened)

    asyncio.run(scenario())


def test_publishers_of_a_closed_loop_are_forgotten() -> None:
    pool = PublisherPool()
    asyncio.run(pool.publish(FakePublisher, "fake://a", b"1", {}))
    assert pool.held() == []  # that loop is gone, and its connection with it

    async def again() -> int:
        await pool.publish(FakePublisher, "fake://a", b"2", {})
        return len(pool.held())

    assert asyncio.run(again()) == 1
