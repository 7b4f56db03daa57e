"""A stop is bounded: a broker client that swallows its cancellation does not hold the triggerer for ever."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from herald.triggerer import triggerer as triggerer_module
from herald.triggers.base import BaseEventTrigger, Message
from tests.integration.contract import run
from tests.integration.harness import TriggererHarness


class Stubborn(BaseEventTrigger):
    """A receive that ignores cancellation, as some clients do inside a blocking read."""

    scheme = "stubborn"

    def __init__(self) -> None:
        super().__init__()
        self.receiving = asyncio.Event()
        self.give_in = False  # the test's own end: the next cancellation is taken

    async def open(self) -> None: ...

    async def receive(self, max_messages: int) -> list[Message]:
        self.receiving.set()
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if self.give_in:
                    raise
                # swallowed, and it goes on waiting

    async def ack(self, messages: list[Message]) -> None: ...

    def describe(self) -> dict[str, Any]:
        return {"url": "stubborn://"}


def test_a_consumer_that_ignores_its_cancellation_is_left_behind_and_the_stop_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(triggerer_module, "STOP_TIMEOUT", 1.0)
    caplog.set_level(logging.WARNING, logger="herald.triggerer")
    harness = TriggererHarness(f"sqlite:///{tmp_path}/herald.db")
    trigger = Stubborn()
    stuck: list[asyncio.Task[Any]] = []

    async def scenario() -> None:
        me = await harness.start(("stubborn", trigger))
        await asyncio.wait_for(trigger.receiving.wait(), 20)
        stuck.extend(c.task for c in me.consumers.values() if c.task is not None)
        began = time.monotonic()
        await asyncio.wait_for(harness.stop(), 30)  # without the bound: never
        assert time.monotonic() - began < 25
        assert stuck and not stuck[0].done()  # left behind, still swallowing
        assert any("did not stop within 1s" in r.getMessage() and "consumer" in r.getMessage() for r in caplog.records)
        trigger.give_in = True
        for task in stuck:  # the test's own loop must end
            task.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)

    try:
        run(scenario, harness)
    finally:
        harness.close()
