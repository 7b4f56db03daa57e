"""The delivery contract on NATS JetStream, and what is special to it: redelivery, lag, a broker restart."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import nats
import nats.js.errors
import pytest

from herald.triggers import nats as nats_trigger
from herald.triggers.base import Message
from herald.triggers.nats import NatsTrigger
from tests.conftest import reachable, require_service, require_tool
from tests.integration.contract import BrokerCase, ContractSuite, run
from tests.integration.harness import TriggererHarness

SERVER = "nats://127.0.0.1:4222"


async def _delete_stream(server: str, stream: str) -> None:
    nc = await nats.connect(servers=[server])
    try:
        await nc.jetstream().delete_stream(stream)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()
    await nats_trigger.close_publishers()


class NatsCase(BrokerCase):
    broker: ClassVar[str] = "nats"
    # close() naks what it holds, so redelivery after a crash does not wait for ack_wait;
    # a short fetch keeps each test's shutdown quick.
    options: ClassVar[dict[str, Any]] = {"ack_wait": 10, "fetch_timeout": 1}
    # the server's default max_payload is 1 MiB
    max_body: ClassVar[int] = 1_000_000

    def require(self) -> None:
        require_service("NATS", "127.0.0.1", 4222)

    def url(self, name: str) -> str:
        return f"{SERVER}/{name}.events?stream={name}&durable=herald"

    async def cleanup(self, url: str) -> None:
        await _delete_stream(SERVER, NatsTrigger.from_url(url).stream)


class TestNatsContract(ContractSuite):
    case = NatsCase()


@pytest.fixture
def name() -> str:
    require_service("NATS", "127.0.0.1", 4222)
    return f"herald-{uuid.uuid4().hex[:10]}"


async def _receive(trigger: NatsTrigger, count: int, attempts: int = 20) -> list[Message]:
    got: list[Message] = []
    for _ in range(attempts):
        got += await trigger.receive(100)
        if len(got) >= count:
            break
    return got


def test_unacknowledged_message_is_redelivered_with_its_sequence(name: str) -> None:
    url = f"{SERVER}/{name}.x?stream={name}&durable=d&ack_wait=1&fetch_timeout=1"

    async def scenario() -> None:
        trigger = NatsTrigger.from_url(url)
        await trigger.open()
        await nats_trigger.publish(url, b'{"n": 1}', {"source": "t"})
        [first] = await _receive(trigger, 1)
        # Given a message received and never acknowledged (the trigger holds it, no nak)
        assert first.metadata["delivered"] == 1
        assert first.headers["source"] == "t"
        # When ack_wait passes, then the server delivers it again: same sequence, same dedupe key
        [again] = await _receive(trigger, 1)
        assert again.dedupe_key == first.dedupe_key == f"{name}:{first.metadata['sequence']}"
        assert again.metadata["delivered"] == 2
        await trigger.ack([again])
        assert await trigger.receive(10) == []
        await trigger.close()
        await _delete_stream(SERVER, name)

    run(scenario)


def test_lag_counts_undelivered_and_unacknowledged(name: str) -> None:
    url = f"{SERVER}/{name}.x?stream={name}&durable=d&fetch_timeout=1"

    async def scenario() -> None:
        trigger = NatsTrigger.from_url(url)
        await trigger.open()
        for n in range(5):
            await nats_trigger.publish(url, str(n).encode())
        assert await trigger.lag() == 5
        batch = await trigger.receive(2)
        assert len(batch) == 2
        await trigger.ack(batch)
        assert await trigger.lag() == 3
        await trigger.close()
        await _delete_stream(SERVER, name)

    run(scenario)


def test_publish_creates_the_stream_before_any_trigger(name: str) -> None:
    url = f"{SERVER}/{name}.x?stream={name}&durable=d&fetch_timeout=1"

    async def scenario() -> None:
        await nats_trigger.publish(url, b"early")
        trigger = NatsTrigger.from_url(url)
        await trigger.open()
        got = await _receive(trigger, 1)
        assert [m.body for m in got] == [b"early"]
        await trigger.ack(got)
        await trigger.close()
        await _delete_stream(SERVER, name)

    run(scenario)


# -- a broker of the test's own, to stop and restart ---------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrivateNats:
    """A nats-server with JetStream on file storage, on 127.0.0.1, that a test may stop."""

    def __init__(self, store: Path) -> None:
        self.port = _free_port()
        self.store = store
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["nats-server", "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not reachable("127.0.0.1", self.port, timeout=0.5):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the private nats-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[PrivateNats]:
    require_tool("nats-server", "the restart test runs a private server (make services installs it)")
    server = PrivateNats(tmp_path / "jetstream")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_watcher_resumes_after_the_broker_restarts(tmp_path: Path, private_nats: PrivateNats) -> None:
    url = f"{private_nats.url}/sensors.x?stream=sensors&durable=herald&fetch_timeout=1"
    harness = TriggererHarness(f"sqlite:///{tmp_path}/herald.db")

    async def scenario() -> None:
        await harness.start(("readings", NatsTrigger.from_url(url)))
        await nats_trigger.publish(url, b'{"n": 1}')
        await harness.wait_events(1, timeout=30)
        await nats_trigger.close_publishers()

        # When the broker stops, the watcher says so rather than stopping silently
        await asyncio.to_thread(private_nats.stop)
        await harness.wait_for(
            lambda: harness.watchers()[0]["state"] == "reconnecting", timeout=30, what="state reconnecting"
        )
        # and when it comes back (same file storage), the watcher resumes and loses nothing
        await asyncio.to_thread(private_nats.start)
        for n in range(2, 5):
            await nats_trigger.publish(url, f'{{"n": {n}}}'.encode())
        await harness.wait_events(4, timeout=60)
        await harness.wait_for(lambda: harness.watchers()[0]["state"] == "running", what="state running")
        await harness.settle(0.5)
        await harness.stop()
        await nats_trigger.close_publishers()
        assert sorted(e["payload"]["n"] for e in harness.events()) == [1, 2, 3, 4]

    try:
        run(scenario)
    finally:
        harness.close()


def test_describe_masks_credentials() -> None:
    trigger = NatsTrigger.from_url("nats://user:s3cret@127.0.0.1:4222/orders.*?durable=d")
    described = trigger.describe()
    assert "s3cret" not in str(described)
    assert (described["stream"], described["durable"], described["subject"]) == ("orders__", "d", "orders.*")
