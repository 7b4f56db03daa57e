"""The delivery contract, written once and run against every broker.

A broker's test module subclasses `ContractSuite` and sets `case` to a
`BrokerCase` that knows how to make a fresh queue URL and publish to it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pytest

from herald import MessageQueueTrigger
from herald.triggers.base import BaseEventTrigger, Message
from tests.integration.harness import TriggererHarness


class PrivateBroker(Protocol):
    """A broker server of the test's own, on a free port, that the test may stop and start again."""

    def queue_url(self, name: str) -> str:
        """A queue URL on this server for a fresh queue called `name`."""
        ...

    def start(self) -> None:
        """Start the server (keeping what it stored before) and wait until it answers."""
        ...

    def stop(self) -> None:
        """Stop the server."""
        ...


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

    def private_broker(self, tmp_path: Path) -> PrivateBroker:
        """A started server of this broker's own, for the restart test; skip where there is none."""
        pytest.skip(getattr(self, "no_restart", f"{type(self).__name__} has no private_broker hook"))

    async def kill_connection(self, trigger: BaseEventTrigger, during: Callable[[], Awaitable[None]]) -> None:
        """Have the broker drop `trigger`'s connection (only its own), and run `during` while it is down.

        Raise `pytest.skip` (with the reason) where the broker has no connection to drop.
        """
        pytest.skip(getattr(self, "no_kill_connection", f"{type(self).__name__} has no kill_connection hook"))


def run(coro_fn: Callable[[], Coroutine[Any, Any, None]], harness: TriggererHarness | None = None) -> None:
    """Run an async scenario to the end in a fresh event loop; a failing one still stops `harness`."""

    async def main() -> None:
        from herald.publishing import aclose_publishers

        try:
            await coro_fn()
        finally:
            if harness is not None:
                await harness.stop()
            await aclose_publishers()  # the pool's one close path

    asyncio.run(main())


class ContractSuite:
    """Delivery tests every broker must pass."""

    case: ClassVar[BrokerCase]

    @pytest.fixture
    def harness(self, database_url: str) -> Any:
        self.case.require()
        h = TriggererHarness(database_url)
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
            await harness.wait_received(3)
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
            await harness.wait_received(3)  # the poison message, order 1 (at least once) and order 2
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
            await harness.wait_received(1)
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
            await harness.wait_received(4)
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
            await harness.wait_received(2)
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
            await harness.wait_received(published)
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

    def test_restart_resumes_where_the_last_trigger_acked(self, harness: TriggererHarness, url: str) -> None:
        """A new trigger instance (a restarted triggerer) gets only what the last one did not acknowledge."""

        async def scenario() -> None:
            await self.case.prepare(url)
            await harness.start(("restarted", self.case.trigger(url)))
            for n in range(3):
                await self.case.publish(url, json.dumps({"n": n}).encode(), None)
            await harness.wait_events(3)
            await harness.restart(("restarted", self.case.trigger(url)))
            await self.case.publish(url, json.dumps({"n": 3}).encode(), None)
            await harness.wait_events(4)
            await harness.wait_received(4)
            await harness.stop()
            await self.case.cleanup(url)
            assert sorted(e["payload"]["n"] for e in harness.events()) == [0, 1, 2, 3]
            # Acknowledged messages were not delivered again to the new instance.
            assert harness.watchers()[0]["deduped"] == 0

        run(scenario, harness)

    def test_a_stop_during_a_delivery_still_acknowledges_the_batch(self, harness: TriggererHarness, url: str) -> None:
        """A triggerer stopped between a batch's commit and its ack acks it before it closes.

        Otherwise the broker would hand the committed message to the next triggerer,
        which could only dedupe it (the flake this replaced: `deduped == 1`).
        """

        async def scenario() -> None:
            await self.case.prepare(url)
            stopping: list[asyncio.Task[None]] = []

            def stop_after_the_commit(point: str) -> None:
                if point == "after_commit" and not stopping and harness.triggerer is not None:
                    stopping.append(asyncio.get_running_loop().create_task(harness.triggerer.stop()))

            await harness.start(("halted", self.case.trigger(url)), fault=stop_after_the_commit)
            await self.case.publish(url, json.dumps({"n": 0}).encode(), None)
            await harness.wait_for(lambda: bool(stopping), what="a stop after the commit")
            await stopping[0]
            await harness.restart(("halted", self.case.trigger(url)))
            await self.case.publish(url, json.dumps({"n": 1}).encode(), None)
            await harness.wait_events(2)
            await harness.wait_received(2)
            await harness.stop()
            await self.case.cleanup(url)
            assert sorted(e["payload"]["n"] for e in harness.events()) == [0, 1]
            assert harness.watchers()[0]["deduped"] == 0

        run(scenario, harness)

    def test_publisher_is_reused_from_the_pool(self, harness: TriggererHarness, url: str) -> None:
        """Publishing twice to one place opens one connection, and closing the pool closes it."""
        from herald.publishing import aclose_publishers, apublish
        from herald.triggers.base import publishers
        from herald.triggers.registry import publisher_class, scheme_of

        async def scenario() -> None:
            await self.case.prepare(url)
            await aclose_publishers()
            cls = publisher_class(scheme_of(url))
            await apublish(url, b"1")
            first = [p for p in publishers.held() if isinstance(p, cls)]
            await apublish(url, b"2")
            second = [p for p in publishers.held() if isinstance(p, cls)]
            await aclose_publishers()
            after = [p for p in publishers.held() if isinstance(p, cls)]
            await self.case.cleanup(url)
            assert len(first) == 1 and first == second
            assert after == []

        if self.case.broker == "local":
            pytest.skip("local:// publishes through the metadata database: no connection to pool")
        run(scenario, harness)

    def test_describe_masks_secrets(self, url: str) -> None:
        """`describe()` (stored, shown in the API and the UI) never holds the URL's password."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(url)
        if parts.scheme == "local":
            pytest.skip("local:// has no credentials")
        host = parts.netloc.rpartition("@")[2]
        secret_url = urlunsplit((parts.scheme, f"herald-user:s3cr3t-pw@{host}", parts.path, parts.query, ""))
        described = json.dumps(self.case.trigger(secret_url).describe())
        assert "s3cr3t-pw" not in described

    def test_reconnects_after_the_connection_drops_and_loses_nothing(self, harness: TriggererHarness, url: str) -> None:
        """The broker drops the watcher's connection; it shows the error, reconnects, and loses nothing."""

        async def scenario() -> None:
            await self.case.prepare(url)
            trigger = self.case.trigger(url)
            await harness.start(("resumed", trigger))
            await self.case.publish(url, b'{"n": 1}', None)
            await harness.wait_events(1, timeout=30)

            async def meanwhile() -> None:
                for n in (2, 3, 4):
                    await self.case.publish(url, json.dumps({"n": n}).encode(), None)

            await self.case.kill_connection(trigger, meanwhile)
            await harness.wait_events(4, timeout=60)
            await harness.wait_for(lambda: harness.watchers()[0]["state"] == "running", what="state running")
            await harness.wait_received(4)
            await harness.stop()
            await self.case.cleanup(url)
            assert sorted(e["payload"]["n"] for e in harness.events()) == [1, 2, 3, 4]
            assert harness.errors, "the watcher never lost its connection"
            # consuming again cleared the error: a running watcher shows no old one
            assert harness.watchers()[0]["last_error"] is None

        run(scenario, harness)

    def test_unacknowledged_messages_come_back_with_the_same_dedupe_keys(self, url: str) -> None:
        """A consumer that dies holding messages it never acknowledged loses none of them:
        the next one gets them again, under the same dedupe keys (so they make no second event)."""
        self.case.require()
        if self.case.broker == "local":
            pytest.skip("local:// rows are deleted in the event transaction: there is no unacknowledged state")

        async def receive(trigger: BaseEventTrigger, count: int) -> list[Message]:
            got: list[Message] = []
            deadline = asyncio.get_running_loop().time() + 60
            while len(got) < count:
                assert asyncio.get_running_loop().time() < deadline, f"received {len(got)} of {count}"
                got += await asyncio.wait_for(trigger.receive(count - len(got)), 60)
            return got

        async def scenario() -> None:
            await self.case.prepare(url)
            first = self.case.trigger(url)
            await first.open()
            await self.case.publish(url, b'{"n": 1}')
            await self.case.publish(url, b'{"n": 2}')
            held = await receive(first, 2)
            await first.close()  # as a crash would leave it: nothing acknowledged
            second = self.case.trigger(url)
            await second.open()
            try:
                again = await receive(second, 2)
                await second.ack(again)
            finally:
                await second.close()
                await self.case.cleanup(url)
            assert sorted(m.dedupe_key for m in again) == sorted(m.dedupe_key for m in held)
            assert sorted(m.body for m in again) == [b'{"n": 1}', b'{"n": 2}']

        run(scenario)

    def test_resumes_after_the_broker_restarts(self, harness: TriggererHarness, tmp_path: Path) -> None:
        """The broker goes away: the watcher says so (reconnecting), then resumes on its own and loses nothing."""
        from herald.publishing import aclose_publishers, apublish

        broker = self.case.private_broker(tmp_path)
        url = broker.queue_url(f"herald-{uuid.uuid4().hex[:10]}")

        async def scenario() -> None:
            await harness.start(("restarted", self.case.trigger(url)))
            await apublish(url, b'{"n": 1}')
            await harness.wait_events(1, timeout=30)
            await aclose_publishers()
            await asyncio.to_thread(broker.stop)
            await harness.wait_for(
                lambda: harness.watchers()[0]["state"] == "reconnecting", timeout=30, what="state reconnecting"
            )
            await asyncio.to_thread(broker.start)
            for n in (2, 3, 4):
                await apublish(url, json.dumps({"n": n}).encode())
            await harness.wait_events(4, timeout=60)
            await harness.wait_for(lambda: harness.watchers()[0]["state"] == "running", what="state running")
            await harness.wait_received(4)
            await harness.stop()
            assert sorted(e["payload"]["n"] for e in harness.events()) == [1, 2, 3, 4]
            assert harness.errors, "the watcher never saw the broker go away"
            assert harness.watchers()[0]["last_error"] is None

        try:
            run(scenario, harness)
        finally:
            broker.stop()
