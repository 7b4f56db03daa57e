"""A NATS fetch that times out is an empty receive, whichever TimeoutError nats-py raises.

nats-py raises `nats.errors.TimeoutError` when nothing came, and a bare
`TimeoutError` when the fetch's deadline ran out before its second pull request
(seen in CI under load): neither is a lost connection. The fetch is a stand-in
here because a real server cannot be made to hit that instant on demand.
"""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
import pytest

from herald.triggers.nats import NatsTrigger


class _Connection:
    def __init__(self, closed: bool) -> None:
        self.is_closed = closed


class _Subscription:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def fetch(self, batch: int, timeout: float) -> list[Any]:
        raise self.error


@pytest.mark.parametrize("error", [TimeoutError(), nats.errors.TimeoutError()])
def test_a_timed_out_fetch_is_an_empty_receive(error: BaseException) -> None:
    trigger = NatsTrigger.from_url("nats://127.0.0.1:4222/s.x?stream=s")
    trigger._nc = _Connection(closed=False)  # type: ignore[assignment]
    trigger._sub = _Subscription(error)  # type: ignore[assignment]
    assert asyncio.run(trigger.receive(10)) == []


def test_a_timed_out_fetch_on_a_closed_connection_is_a_lost_connection() -> None:
    trigger = NatsTrigger.from_url("nats://127.0.0.1:4222/s.x?stream=s")
    connection = _Connection(closed=False)
    trigger._nc = connection  # type: ignore[assignment]

    class _ClosingSubscription(_Subscription):
        async def fetch(self, batch: int, timeout: float) -> list[Any]:
            connection.is_closed = True
            raise TimeoutError

    trigger._sub = _ClosingSubscription(TimeoutError())  # type: ignore[assignment]
    with pytest.raises(ConnectionError, match="was lost"):
        asyncio.run(trigger.receive(10))
