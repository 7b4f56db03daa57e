"""Triggers written for Airflow (serialize, async run yielding TriggerEvent) behind Herald's contract."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from herald import BaseEventTrigger, TriggerEvent
from herald.sdk.airflow_triggers import AT_MOST_ONCE
from herald.sdk.triggers import Message


class Countdown(BaseEventTrigger):
    def __init__(self, start: int, password: str = "s3cret", fail: bool = False) -> None:
        super().__init__()
        self.start, self.password, self.fail = start, password, fail

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("tests.Countdown", {"start": self.start, "password": self.password})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        for n in range(self.start, 0, -1):
            yield TriggerEvent({"n": n})
        if self.fail:
            raise ConnectionError("source gone")
        await asyncio.Event().wait()  # an event trigger runs until stopped


class Named(Countdown):
    dedupe_on = "n"


def test_an_airflow_style_trigger_yields_messages_whose_payload_is_the_events() -> None:
    async def scenario() -> list[Message]:
        trigger = Countdown(3)
        await trigger.open()
        try:
            got: list[Message] = []
            while len(got) < 3:
                got += await trigger.receive(10)
            await trigger.ack(got)  # nothing to acknowledge, and no error
            return got
        finally:
            await trigger.close()

    messages = asyncio.run(scenario())
    trigger = Countdown(3)
    assert [trigger.to_payload(m) for m in messages] == [(True, {"n": n}, None) for n in (3, 2, 1)]
    # no identity in the payload: every event is its own
    assert len({m.dedupe_key for m in messages}) == 3
    described = trigger.describe()
    assert described["trigger"] == "tests.Countdown" and described["kwargs"] == {"start": 3, "password": "***"}
    assert described["delivery"] == AT_MOST_ONCE and "receive/ack" in AT_MOST_ONCE


def test_dedupe_on_names_the_event_and_run_failures_reach_the_triggerer() -> None:
    async def scenario() -> tuple[list[str], str]:
        trigger = Named(2, fail=True)
        await trigger.open()
        keys: list[str] = []
        try:
            while True:
                keys += [m.dedupe_key for m in await trigger.receive(10)]
        except ConnectionError as exc:
            return keys, str(exc)
        finally:
            await trigger.close()

    keys, error = asyncio.run(scenario())
    assert keys == ["n:2", "n:1"] and error == "source gone"
    assert "deduplicated on the payload's 'n'" in Named(1).describe()["delivery"]


def test_a_herald_trigger_keeps_its_own_contract_and_a_non_event_is_refused() -> None:
    class Wrong(BaseEventTrigger):
        def serialize(self) -> tuple[str, dict[str, Any]]:
            return ("tests.Wrong", {})

        async def run(self) -> AsyncIterator[Any]:
            yield {"not": "an event"}

    async def scenario() -> None:
        trigger = Wrong()
        await trigger.open()
        try:
            await trigger.receive(1)
        finally:
            await trigger.close()

    with pytest.raises(TypeError, match="must yield TriggerEvent"):
        asyncio.run(scenario())

    class Half(BaseEventTrigger):  # neither Herald's receive nor Airflow's run: still abstract
        def describe(self) -> dict[str, Any]:
            return {}

    with pytest.raises(TypeError, match="abstract"):
        Half()  # type: ignore[abstract]
    assert TriggerEvent({"a": 1}) == TriggerEvent({"a": 1}) and repr(TriggerEvent(1)) == "TriggerEvent<1>"
