"""The delivery contract on NATS JetStream, and what is special to it: redelivery, lag, a broker restart."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

import nats
import nats.js.errors
import pytest

from herald.publishing import aclose_publishers, apublish
from herald.triggers.base import Message
from herald.triggers.nats import NatsTrigger
from tests.conftest import reachable, require_service, require_tool
from tests.integration.contract import BrokerCase, ContractSuite, run

SERVER = "nats://127.0.0.1:4222"


async def _delete_stream(server: str, stream: str) -> None:
    nc = await nats.connect(servers=[server])
    try:
        await nc.jetstream().delete_stream(stream)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()
    await aclose_publishers()


class NatsCase(BrokerCase):
    broker: ClassVar[str] = "nats"
    # close() naks what it holds, so redelivery after a crash does not wait for ack_wait;
    # a short fetch keeps each test's shutdown quick.
    options: ClassVar[dict[str, Any]] = {"ack_wait": 10, "fetch_timeout": 1}
    # the server's default max_payload is 1 MiB
    max_body: ClassVar[int] = 1_000_000

    #: why the contract's reconnect test does not apply
    no_kill_connection: ClassVar[str] = (
        "nats-server has no command to drop one client; "
        "the server restart is the contract's test_resumes_after_the_broker_restarts"
    )

    def require(self) -> None:
        require_service("NATS", "127.0.0.1", 4222)

    def url(self, name: str) -> str:
        return f"{SERVER}/{name}.events?stream={name}&durable=herald"

    def private_broker(self, tmp_path: Path) -> PrivateNats:
        require_tool("nats-server", "the restart test runs a private server (make services installs it)")
        server = PrivateNats(tmp_path / "jetstream")
        server.start()
        return server

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
        try:
            await apublish(url, b'{"n": 1}', {"source": "t"})
            [first] = await _receive(trigger, 1)
            # Given a message received and never acknowledged (the trigger holds it, no nak)
            assert first.metadata["delivered"] == 1
            assert first.headers["source"] == "t"
            # When ack_wait passes, then the server delivers it again: same sequence, same
            # dedupe key. On a loaded machine a pull request that expired on the client may
            # hand the first delivery over once more before the redelivery comes.
            redelivered: list[Message] = []
            for _ in range(5):
                got = await _receive(trigger, 1)
                assert all(m.dedupe_key == first.dedupe_key for m in got)
                redelivered = [m for m in got if m.metadata["delivered"] >= 2]
                if redelivered:
                    break
            assert redelivered, "no redelivery after ack_wait"
            again = redelivered[0]
            assert again.dedupe_key == first.dedupe_key == f"{name}:{first.metadata['sequence']}"
            await trigger.ack([again])
            # Acknowledged: not delivered a third time (a stale copy of an earlier delivery may show)
            after = await trigger.receive(10)
            assert all(m.metadata["delivered"] <= again.metadata["delivered"] for m in after)
        finally:
            await trigger.close()  # a failed assertion must not leave the connection to the next test
            await _delete_stream(SERVER, name)

    run(scenario)


def test_lag_counts_undelivered_and_unacknowledged(name: str) -> None:
    url = f"{SERVER}/{name}.x?stream={name}&durable=d&fetch_timeout=1"

    async def scenario() -> None:
        trigger = NatsTrigger.from_url(url)
        await trigger.open()
        try:
            for n in range(5):
                await apublish(url, str(n).encode())
            assert await trigger.lag() == 5
            batch = await trigger.receive(2)
            assert len(batch) == 2
            await trigger.ack(batch)
            # The server has the acks (flushed) but applies them to the consumer on its own
            # goroutine: its info catches up a moment later.
            lags = [await trigger.lag()]
            for _ in range(50):
                if lags[-1] == 3:
                    break
                await asyncio.sleep(0.1)
                lags.append(await trigger.lag())
            assert lags[-1] == 3 and set(lags) <= {5, 4, 3}, lags
        finally:
            await trigger.close()
            await _delete_stream(SERVER, name)

    run(scenario)


def test_publish_creates_the_stream_before_any_trigger(name: str) -> None:
    url = f"{SERVER}/{name}.x?stream={name}&durable=d&fetch_timeout=1"

    async def scenario() -> None:
        await apublish(url, b"early")
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

    def queue_url(self, name: str) -> str:
        return f"{self.url}/{name}.x?stream={name}&durable=herald&fetch_timeout=1"

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


def test_describe_masks_credentials() -> None:
    trigger = NatsTrigger.from_url("nats://user:s3cret@127.0.0.1:4222/orders.*?durable=d")
    described = trigger.describe()
    assert "s3cret" not in str(described)
    assert (described["stream"], described["durable"], described["subject"]) == ("orders__", "d", "orders.*")
