"""The delivery contract, written once and run against every broker.

A broker's test module subclasses `ContractSuite` and sets `case` to a
`BrokerCase` that knows how to make a fresh queue URL and publish to it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar

import pytest

from herald import MessageQueueTrigger
from herald.triggers.base import BaseEventTrigger, Message
from tests.integration.harness import TriggererHarness


class BrokerCase:
    """How the contract suite talks to one broker."""

    #: the `extra["message"]["broker"]` value this broker's events carry
    broker: ClassVar[str] = ""
    #: whether the broker carries headers through
    headers: ClassVar[bool] = True
    #: options every trigger of this broker gets in the suite (short timeouts...)
    options: ClassVar[dict[str, Any]] = {}
    #: the largest body the broker accepts (the bad-input test sends one this big, up to 10 MiB)
    max_body: ClassVar[int] = 10 * 1024 * 1024

    def require(self) -> None:
        """Skip or fail (in CI) when the broker cannot be reached."""

    def attach(self, harness: TriggererHarness) -> None:
        """Learn the harness of the current test (its database URL...)."""

    def url(self, name: str) -> str:
        """A queue URL for a fresh queue/topic/stream called `name`."""
        raise NotImplementedError

    async def prepare(self, url: str) -> None:
        """Create what must exist before messages are published (queue, stream, group)."""

    async def publish(self, url: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        """Send one message (Herald's own publisher by default)."""
        from herald import apublish

        await apublish(url, body, headers)

    async def cleanup(self, url: str) -> None:
        """Remove what `prepare` created."""

    def trigger(self, url: str, **options: Any) -> BaseEventTrigger:
        """The trigger under test."""
        return MessageQueueTrigger(url, **{**self.options, **options})


def run(coro_fn: Callable[[], Coroutine[Any, Any, None]], harness: TriggererHarness | None = None) -> None:
    """Run an async scenario to the end in a fresh event loop; a failing one still stops `harness`."""

    async def main() -> None:
        try:
            await coro_fn()
        finally:
            if harness is not None:
                await harness.stop()

    asyncio.run(main())


class ContractSuite:
    """Delivery tests every broker must pass."""

    case: ClassVar[BrokerCase]

    @pytest.fixture
    def harness(self, tmp_path: Any) -> Any:
        self.case.require()
        h = TriggererHarness(f"sqlite:///{tmp_path}/herald.db")
        self.case.attach(h)
        yield h
        h.close()

    @pytest.fixture
    def url(self) -> str:
        return self.case.url(f"herald-{uuid.uuid4().hex[:10]}")

    def test_messages_become_events_with_payload_and_metadata(self, harness: TriggererHarness, url: str) -> None:
        async def scenario() -> None:
            await self.case.prepare(url)
            await harness.start(("readings", self.case.trigger(url)))
            headers = {"source": "sensor-7"} if self.case.headers else None
            await self.case.publish(url, json.dumps({"n": 1, "temp": 21.5}).encode(), headers)
            await self.case.publish(url, b"plain text", None)
            await self.case.publish(url, b"\xff\xfe\x00binary", None)
            events = await harness.wait_events(3)
            await harness.settle(0.5)
            await harness.stop()
            await self.case.cleanup(url)
            assert len(harness.events()) == 3
            by_payload = {json.dumps(e["payload"], sort_keys=True): e for e in events}
            first = by_payload[json.dumps({"n": 1, "temp": 21.5}, sort_keys=True)]
            assert first["message"]["broker"] == self.case.broker
            assert first["message"]["dedupe_key"]
            if self.case.headers:
                assert first["message"]["headers"]["source"] == "sensor-7"
            assert '"plain text"' in by_payload
            binary = next(e for e in events if e.get("payload_encoding") == "base64")
            assert binary["payload"] == "//4AYmluYXJ5"
            assert harness.queued() == 3  # one queue entry per event for the DAG on the asset

        run(scenario, harness)

    def test_crash_after_commit_before_ack_makes_no_duplicate(self, harness: TriggererHarness, url: str) -> None:
        crashed: list[str] = []

        def crash_once(point: str) -> None:
            if point == "after_commit" and not crashed:
                crashed.append(point)
                raise ConnectionError("injected crash between commit and ack")

        def parse(message: Message) -> Any:
            return json.loads(message.value())

        async def scenario() -> None:
            await self.case.prepare(url)
            await harness.start(("orders", self.case.trigger(url, apply_function=parse)), fault=crash_once)
            await self.case.publish(url, b"{poison")
            await self.case.publish(url, b'{"order": 1}')
            await harness.wait_events(1)
            # The failed ack makes the consumer reconnect; the broker redelivers the
            # messages, and their dedupe keys keep them from becoming a second event
            # or a second dead letter.
            await harness.restart(("orders", self.case.trigger(url, apply_function=parse)))
            await self.case.publish(url, b'{"order": 2}')
            await harness.wait_events(2)
            await harness.settle(1.0)
            await harness.stop()
            await self.case.cleanup(url)
            assert crashed
            assert sorted(e["payload"]["order"] for e in harness.events()) == [1, 2]
            assert len(harness.dead_letters()) == 1

        run(scenario, harness)

    def test_crash_before_commit_redelivers(self, harness: TriggererHarness, url: str) -> None:
        crashed: list[str] = []

        def crash_once(point: str) -> None:
            if point == "before_commit" and not crashed:
                crashed.append(point)
                raise ConnectionError("injected crash before the commit")

        async def scenario() -> None:
            await self.case.prepare(url)
            await harness.start(("orders", self.case.trigger(url)), fault=crash_once)
            await self.case.publish(url, b'{"order": 1}')
            events = await harness.wait_events(1, timeout=40)
            await harness.settle(0.5)
            await harness.stop()
            await self.case.cleanup(url)
            assert crashed, "the fault point was never reached"
            assert [e["payload"] for e in events] == [{"order": 1}]

        run(scenario, harness)

    def test_apply_function_and_filter(self, harness: TriggererHarness, url: str) -> None:
        def parse(message: Message) -> Any:
            data = json.loads(message.value())
            return None if data.get("drop") else data

        async def scenario() -> None:
            await self.case.prepare(url)
            trigger = self.case.trigger(url, apply_function=parse, filter="temp > `30`")
            await harness.start(("alerts", trigger))
            for body in ({"temp": 35}, {"temp": 10}, {"temp": 40, "drop": True}, {"temp": 31}):
                await self.case.publish(url, json.dumps(body).encode())
            await harness.wait_for(lambda: harness.watchers()[0]["received"] >= 4, what="4 messages received")
            await harness.settle(0.5)
            await harness.stop()
            await self.case.cleanup(url)
            assert sorted(e["payload"]["temp"] for e in harness.events()) == [31, 35]
            w = harness.watchers()[0]
            assert (w["received"], w["events"], w["skipped"], w["dead_lettered"]) == (4, 2, 2, 0)

        run(scenario, harness)

    def test_poison_message_becomes_dead_letter_and_consumption_goes_on(
        self, harness: TriggererHarness, url: str
    ) -> None:
        async def scenario() -> None:
            await self.case.prepare(url)
            trigger = self.case.trigger(url, apply_function=lambda m: json.loads(m.value()))
            await harness.start(("orders", trigger))
            await self.case.publish(url, b"{not json")
            await self.case.publish(url, b'{"ok": true}')
            await harness.wait_events(1)
            await harness.wait_for(lambda: len(harness.dead_letters()) >= 1, what="a dead letter")
            await harness.settle(0.5)
            await harness.stop()
            await self.case.cleanup(url)
            dead = harness.dead_letters()
            assert len(dead) == 1
            assert bytes(dead[0]["body"]) == b"{not json"
            assert "JSONDecodeError" in dead[0]["error"]
            assert [e["payload"] for e in harness.events()] == [{"ok": True}]

        run(scenario, harness)

    def test_bad_input_becomes_dead_letters_and_consumption_goes_on(self, harness: TriggererHarness, url: str) -> None:
        big = min(self.case.max_body, 10 * 1024 * 1024)

        def strict(message: Message) -> Any:
            data = json.loads(message.value())  # raises on empty, non-UTF-8 and non-JSON bodies
            if data.get("kind") == "raise":
                raise RuntimeError("apply_function refused this message")
            if data.get("kind") == "set":
                return {1, 2}  # not JSON-serialisable
            return data

        many_headers = {f"h{i}": "x" * 50 for i in range(100)} if self.case.headers else None
        bad: list[tuple[bytes, dict[str, str] | None]] = [
            (b"", None),
            (b"\x81\x82 not UTF-8 \xff", None),
            (b"{not json", None),
            (b'{"kind": "raise"}', None),
            (b'{"kind": "set"}', None),
            (b'{"kind": "big", "pad": "' + b"x" * (big - 26) + b'"}', None),
        ]
        good: list[tuple[bytes, dict[str, str] | None]] = [
            (b'{"kind": "ok", "n": 1}', many_headers),
            (b'{"kind": "ok", "n": 2}', None),
        ]

        async def scenario() -> None:
            await self.case.prepare(url)
            trigger = self.case.trigger(url, apply_function=strict, max_payload_bytes=big - 1)
            await harness.start(("orders", trigger))
            for body, headers in [*bad[:3], good[0], *bad[3:], good[1]]:
                await self.case.publish(url, body, headers)
            published = len(bad) + len(good)
            await harness.wait_for(
                lambda: len(harness.events()) + len(harness.dead_letters()) >= published, 60, "every message"
            )
            await harness.settle(0.5)
            await harness.stop()
            await self.case.cleanup(url)
            dead = harness.dead_letters()
            assert len(dead) == len(bad), [d["error"] for d in dead]
            assert len(harness.events()) == len(good), harness.events()
            reasons = " | ".join(d["error"] for d in dead)
            for expected in (
                "JSONDecodeError",
                "UnicodeDecodeError",
                "apply_function refused",
                "not JSON-serialisable",
                "over the limit",
            ):
                assert expected in reasons, reasons
            assert sorted(e["payload"]["n"] for e in harness.events()) == [1, 2]
            if many_headers:
                with_headers = next(e for e in harness.events() if e["payload"]["n"] == 1)
                assert with_headers["message"]["headers"]["h99"] == "x" * 50
            w = harness.watchers()[0]
            assert w["dead_lettered"] + w["events"] == published

        run(scenario, harness)

    def test_watcher_state_is_running(self, harness: TriggererHarness, url: str) -> None:
        async def scenario() -> None:
            await self.case.prepare(url)
            await harness.start(("orders", self.case.trigger(url)))
            await harness.wait_for(lambda: harness.watchers()[0]["state"] == "running", what="state running")
            await harness.stop()
            await self.case.cleanup(url)
            assert harness.watchers()[0]["state"] == "stopped"

        run(scenario, harness)
