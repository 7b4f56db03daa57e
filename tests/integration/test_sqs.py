"""Amazon SQS against moto's server: the delivery contract, plus long polling, batches,
visibility extension, FIFO queues, connections and Airflow's queue URLs.

The tests start `moto_server` on a free port of 127.0.0.1 for the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiobotocore.session import get_session

from herald import MessageQueueTrigger
from herald.publishing import aclose_publishers, apublish
from herald.triggers.base import publishers
from herald.triggers.sqs import SqsTrigger, parse_url
from tests.conftest import reachable, require_service
from tests.integration.contract import BrokerCase, ContractSuite, run
from tests.integration.harness import TriggererHarness

ACCOUNT = "123456789012"  # moto's default account
KEY = "testing"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _moto_exe() -> str | None:
    candidate = Path(sys.executable).with_name("moto_server")
    return str(candidate) if candidate.exists() else shutil.which("moto_server")


def _start_moto(exe: str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not reachable("127.0.0.1", port, 0.2):
        time.sleep(0.1)
    return proc


def _stop_moto(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="session", autouse=True)
def moto_server() -> Iterator[int | None]:
    """moto's SQS server on 127.0.0.1 for this test module's session."""
    exe = _moto_exe()
    if exe is None:
        yield None  # require() then skips, or fails in CI
        return
    port = _free_port()
    proc = _start_moto(exe, port)
    SqsCase.port = port
    try:
        yield port
    finally:
        SqsCase.port = None
        _stop_moto(proc)


@contextlib.asynccontextmanager
async def admin(port: int) -> AsyncIterator[Any]:
    """A plain aiobotocore client on moto, for what the tests do besides Herald."""
    async with get_session().create_client(
        "sqs",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id=KEY,
        aws_secret_access_key=KEY,
    ) as client:
        yield client


class SqsCase(BrokerCase):
    max_body: ClassVar[int] = 200 * 1024  # SQS takes 256 KiB per message, attributes included
    broker: ClassVar[str] = "sqs"
    port: ClassVar[int | None] = None
    # Short polls and visibility so that a long poll orphaned by a test's restart
    # (it may still take a message after the client went away) costs seconds.
    options: ClassVar[dict[str, Any]] = {"wait_time_seconds": 1, "visibility_timeout": 5}

    #: why the contract's reconnect test does not apply
    no_kill_connection: ClassVar[str] = (
        "SQS is request/response over HTTP: there is no held connection to drop; "
        "a server restart is covered by test_watcher_reconnects_after_the_server_restarts"
    )

    #: why the contract's broker restart test does not apply
    no_restart: ClassVar[str] = (
        "moto keeps nothing across a restart (the queue is made again): "
        "test_watcher_reconnects_after_the_server_restarts covers it"
    )

    def require(self) -> None:
        require_service("SQS (moto_server)", "127.0.0.1", self.port or 0)

    def url(self, name: str) -> str:
        return f"sqs+http://{KEY}:{KEY}@127.0.0.1:{self.port}/{ACCOUNT}/{name}?region=us-east-1"

    async def prepare(self, url: str) -> None:
        address = parse_url(url)
        attributes = {"FifoQueue": "true"} if address.fifo else {}
        assert self.port is not None
        async with admin(self.port) as client:
            await client.create_queue(QueueName=address.queue, Attributes=attributes)

    async def cleanup(self, url: str) -> None:
        assert self.port is not None
        async with admin(self.port) as client:
            await client.delete_queue(QueueUrl=parse_url(url).queue_url)


CASE = SqsCase()


class TestSqsContract(ContractSuite):
    case = CASE


# -- SQS specifics -------------------------------------------------------------------------


@pytest.fixture
def port() -> int:
    CASE.require()
    assert CASE.port is not None
    return CASE.port


@pytest.fixture
def queue_url(port: int) -> str:
    return CASE.url(f"herald-{uuid.uuid4().hex[:10]}")


async def _counts(port: int, url: str) -> tuple[int, int]:
    async with admin(port) as client:
        response = await client.get_queue_attributes(
            QueueUrl=parse_url(url).queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
    a = response["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def test_url_forms_and_defaults() -> None:
    https = parse_url("sqs://sqs.eu-west-1.amazonaws.com/111122223333/orders")
    assert (https.endpoint_url, https.queue_url, https.region) == (
        "https://sqs.eu-west-1.amazonaws.com",
        "https://sqs.eu-west-1.amazonaws.com/111122223333/orders",
        "eu-west-1",
    )
    aws = parse_url("https://sqs.ap-south-1.amazonaws.com/111122223333/jobs.fifo")
    assert (aws.endpoint_url, aws.region, aws.queue, aws.fifo) == (
        "https://sqs.ap-south-1.amazonaws.com",
        "ap-south-1",
        "jobs.fifo",
        True,
    )
    local = parse_url("sqs+http://AKID:se%2Fcret@127.0.0.1:5005/000000000000/q?region=us-west-2")
    assert (local.endpoint_url, local.access_key, local.secret_key, local.region) == (
        "http://127.0.0.1:5005",
        "AKID",
        "se/cret",
        "us-west-2",
    )
    assert parse_url("sqs+http://127.0.0.1:5005/000000000000/q").region is None  # botocore's, else us-east-1
    for bad in ("sqs://host/only-queue", "https://example.com/1/q", "sqs://_/000000000000/q"):
        with pytest.raises(ValueError):
            parse_url(bad)

    trigger = SqsTrigger.from_url(
        "sqs+http://AKID:topsecret@127.0.0.1:5005/000000000000/q?max_messages=50&wait_time_seconds=3"
    )
    assert (trigger.max_messages, trigger.wait_time_seconds) == (10, 3)  # capped at SQS's 10
    described = json.dumps(trigger.describe())
    assert "topsecret" not in described and "AKID:***@" in described
    assert trigger.describe()["broker"] == "sqs"
    with pytest.raises(ValueError, match="wait_time_seconds"):
        SqsTrigger.from_url("sqs://h/1/q", wait_time_seconds=21)
    assert (trigger.receives, trigger.batches) == (4, 5)  # four long polls in flight by default
    assert SqsTrigger.from_url("sqs://h/1/q?receives=8").describe()["receives"] == 8
    with pytest.raises(ValueError, match="receives"):
        SqsTrigger.from_url("sqs://h/1/q", receives=0)
    with pytest.raises(ValueError, match=r"unknown SQS option .wait. in the URL; valid: .*wait_time_seconds"):
        SqsTrigger.from_url("sqs://h/1/q?wait=3")
    with pytest.raises(ValueError, match="not both"):
        SqsTrigger.from_url("sqs://h/1/q", airflow_compat=True, apply_function=lambda m: m.json())


def test_connection_fills_host_and_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_CONN_AWS_TEST", "sqs+http://AKID:topsecret@127.0.0.1:5005?region=us-east-1")
    # Airflow's form of the URL, with the connection pointing at a local server
    trigger = SqsTrigger.from_url("https://sqs.us-east-1.amazonaws.com/123456789012/orders", aws_conn_id="aws_test")
    assert trigger.address.endpoint_url == "http://127.0.0.1:5005"
    assert (trigger.address.access_key, trigger.address.secret_key) == ("AKID", "topsecret")
    assert trigger.address.queue_url == "http://127.0.0.1:5005/123456789012/orders"
    assert trigger.describe()["conn_id"] == "aws_test"
    assert "topsecret" not in json.dumps(trigger.describe())
    # the placeholder host of a DAG file that keeps everything in the connection
    placeholder = MessageQueueTrigger("sqs://_/123456789012/orders", conn_id="aws_test")
    assert isinstance(placeholder, SqsTrigger) and placeholder.address.endpoint_url == "http://127.0.0.1:5005"
    # a connection holding only keys keeps the URL's AWS host
    monkeypatch.setenv("HERALD_CONN_KEYS", "aws://AKID:topsecret@")
    keys_only = SqsTrigger.from_url("sqs://sqs.eu-west-1.amazonaws.com/1/q", conn_id="keys")
    assert keys_only.address.endpoint_url == "https://sqs.eu-west-1.amazonaws.com"
    assert keys_only.address.access_key == "AKID"


def test_batches_of_at_most_ten_deleted_only_on_ack_and_lag(port: int, queue_url: str) -> None:
    async def scenario() -> None:
        await CASE.prepare(queue_url)
        for n in range(25):
            await apublish(queue_url, json.dumps({"n": n}).encode())
        trigger = SqsTrigger.from_url(queue_url, wait_time_seconds=1, visibility_timeout=30, batches=1)
        await trigger.open()
        try:
            assert await trigger.lag() == 25
            first = await trigger.receive(500)
            assert 1 <= len(first) <= 10
            assert await trigger.lag() == 25 - len(first)
            seen = {m.json()["n"] for m in first}
            await trigger.ack(first)
            while len(seen) < 25:
                batch = await trigger.receive(500)
                assert len(batch) <= 10
                seen |= {m.json()["n"] for m in batch}
                await trigger.ack(batch)
            assert seen == set(range(25))
            assert await trigger.lag() == 0
            assert await _counts(port, queue_url) == (0, 0)  # all deleted
        finally:
            await trigger.close()
            await CASE.cleanup(queue_url)

    run(scenario)


class CallCounter:
    """Wraps a client method: how many calls are in flight at once, at most, and what each was given."""

    def __init__(self, client: Any, method: str) -> None:
        self.original = getattr(client, method)
        self.in_flight = 0
        self.most = 0
        self.calls: list[dict[str, Any]] = []
        setattr(client, method, self)

    async def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            return await self.original(**kwargs)
        finally:
            self.in_flight -= 1


async def _until(check: Any, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "condition not reached"
        await asyncio.sleep(0.05)


def test_a_backlog_is_received_by_several_calls_in_flight_each_message_once(port: int, queue_url: str) -> None:
    async def scenario() -> None:
        await CASE.prepare(queue_url)
        for n in range(45):
            await apublish(queue_url, json.dumps({"n": n}).encode())
        trigger = SqsTrigger.from_url(queue_url, wait_time_seconds=1, visibility_timeout=30)  # receives=4, batches=5
        await trigger.open()
        receives = CallCounter(trigger._client, "receive_message")
        deletes = CallCounter(trigger._client, "delete_message_batch")
        try:
            first = await trigger.receive(500)
            assert first
            # While the triggerer commits the first batch, the other receives go on.
            await _until(lambda: len(first) + len(trigger._ready) >= 30)
            assert receives.most >= 2, "the receives never overlapped"
            seen = [m.json()["n"] for m in first]
            await trigger.ack(first)
            second = await trigger.receive(500)
            assert max(len(first), len(second)) > 10  # several receives' messages in one batch
            held = [*first, *second]
            seen += [m.json()["n"] for m in second]
            while len(seen) < 45:
                batch = await trigger.receive(500)
                seen += [m.json()["n"] for m in batch]
                held += batch
                await trigger.ack(batch)
            await trigger.ack(second)
            assert sorted(seen) == list(range(45))  # nothing lost, nothing twice
            assert len({m.dedupe_key for m in held}) == 45
            assert await _counts(port, queue_url) == (0, 0)
            # the 20-odd messages of one batch went in DeleteMessageBatch calls of 10, together
            assert max(len(c["Entries"]) for c in deletes.calls) == 10
            assert deletes.most >= 2
            assert receives.most <= 4
        finally:
            await trigger.close()
            await CASE.cleanup(queue_url)

    run(scenario)


def test_receives_in_flight_never_hold_more_than_batches_of_messages(port: int, queue_url: str) -> None:
    async def scenario() -> None:
        await CASE.prepare(queue_url)
        for n in range(30):
            await apublish(queue_url, json.dumps({"n": n}).encode())
        trigger = SqsTrigger.from_url(
            queue_url, wait_time_seconds=1, visibility_timeout=30, max_messages=5, batches=2, receives=4
        )
        await trigger.open()
        receives = CallCounter(trigger._client, "receive_message")
        try:
            got = await trigger.receive(500)
            # Given nothing acknowledged, the watcher fills its two receives' worth and asks no
            # more. (A receive may come back short, or two overlapping receives may both get one
            # message, on a standard queue: then it holds fewer, never more.)
            await _until(lambda: trigger._calls == 0 and not trigger._has_room())
            await asyncio.sleep(1.5)  # deliberate: time for a receive that should not happen
            held = {message_id for message_id, _ in trigger._inflight.values()}
            assert 5 <= len(trigger._inflight) <= 10 and receives.most <= 2 and len(receives.calls) <= 2
            assert await _counts(port, queue_url) == (30 - len(held), len(held))
            seen = {m.json()["n"] for m in got}
            await trigger.ack(got)
            while len(seen) < 30:
                batch = await trigger.receive(500)
                assert len(trigger._inflight) <= 10
                seen |= {m.json()["n"] for m in batch}
                await trigger.ack(batch)
            assert seen == set(range(30))
        finally:
            await trigger.close()
            await CASE.cleanup(queue_url)

    run(scenario)


def test_a_message_two_receives_in_flight_both_got_is_delivered_once_and_both_copies_deleted(
    port: int, queue_url: str
) -> None:
    async def scenario() -> None:
        await CASE.prepare(queue_url)
        await apublish(queue_url, b"twice")
        # Visible again at once: every receive in flight gets the same message anew.
        trigger = SqsTrigger.from_url(
            queue_url, wait_time_seconds=1, visibility_timeout=0, max_messages=1, batches=3, receives=3
        )
        await trigger.open()
        deletes = CallCounter(trigger._client, "delete_message_batch")
        try:
            first = await trigger.receive(10)
            assert [m.body for m in first] == [b"twice"]
            await _until(lambda: len(trigger._duplicates) >= 1)
            assert list(trigger._ready) == []  # a copy is never handed over
            await trigger.ack(first)
            handles = {e["ReceiptHandle"] for c in deletes.calls for e in c["Entries"]}
            assert len(handles) >= 2  # the first copy's and the others'
            assert await _counts(port, queue_url) == (0, 0)
            assert await trigger.receive(10) == []
        finally:
            await trigger.close()
            await CASE.cleanup(queue_url)

    run(scenario)


def test_a_backlog_through_the_triggerer_with_receives_in_flight_is_one_event_per_message(
    tmp_path: Path, port: int, queue_url: str
) -> None:
    harness = TriggererHarness(f"sqlite:///{tmp_path}/herald.db")

    async def scenario() -> None:
        await CASE.prepare(queue_url)
        async with admin(port) as client:
            for start in range(0, 40, 10):
                entries = [{"Id": str(n), "MessageBody": json.dumps({"n": start + n})} for n in range(10)]
                await client.send_message_batch(QueueUrl=parse_url(queue_url).queue_url, Entries=entries)
        trigger = CASE.trigger(queue_url)
        assert isinstance(trigger, SqsTrigger) and trigger.receives == 4
        await harness.start(("backlog", trigger))
        await harness.wait_events(40, timeout=60)
        await harness.wait_received(40, timeout=60)
        await harness.stop()
        assert await _counts(port, queue_url) == (0, 0)
        await CASE.cleanup(queue_url)

    try:
        run(scenario)
        events = harness.events()
        assert sorted(e["payload"]["n"] for e in events) == list(range(40))
        assert sum(w["deduped"] for w in harness.watchers()) == 0
    finally:
        harness.close()


def test_long_poll_returns_as_soon_as_a_message_arrives(port: int, queue_url: str) -> None:
    async def scenario() -> None:
        await CASE.prepare(queue_url)
        trigger = SqsTrigger.from_url(queue_url)  # the default 20 s long poll
        await trigger.open()
        try:
            receiving = asyncio.create_task(trigger.receive(10))
            await asyncio.sleep(0.5)  # deliberate: a receive that did not long-poll would have returned by now
            assert not receiving.done()
            await apublish(queue_url, b"wake up", {"source": "test"})
            # well before the 20 s the poll would wait with nothing to return
            messages = await asyncio.wait_for(receiving, 15)
            assert [m.body for m in messages] == [b"wake up"]
            message = messages[0]
            assert message.headers == {"source": "test"}
            assert message.metadata["broker"] == "sqs"
            assert message.metadata["receive_count"] == 1
            assert message.dedupe_key == f"{parse_url(queue_url).queue}/{message.metadata['message_id']}"
            await trigger.ack(messages)
        finally:
            await trigger.close()
            await CASE.cleanup(queue_url)

    run(scenario)


def test_visibility_is_extended_until_the_ack(port: int, queue_url: str) -> None:
    async def scenario() -> None:
        await CASE.prepare(queue_url)
        await apublish(queue_url, b"slow commit")
        holder = SqsTrigger.from_url(queue_url, wait_time_seconds=1, visibility_timeout=4)
        other = SqsTrigger.from_url(queue_url, wait_time_seconds=1, visibility_timeout=4)
        await holder.open()
        await other.open()
        try:
            held = await holder.receive(10)
            assert [m.body for m in held] == [b"slow commit"]
            # Given a commit that takes three visibility timeouts, a competing
            # consumer never sees the message meanwhile.
            stolen: list[Any] = []
            end = time.monotonic() + 12
            while time.monotonic() < end:
                stolen += await other.receive(10)
            assert stolen == []
            await holder.ack(held)
            assert await _counts(port, queue_url) == (0, 0)
        finally:
            await holder.close()
            await other.close()
            await CASE.cleanup(queue_url)

    run(scenario)


def test_close_releases_unacknowledged_messages_at_once(port: int, queue_url: str) -> None:
    async def scenario() -> None:
        await CASE.prepare(queue_url)
        await apublish(queue_url, b"not yet committed")
        first = SqsTrigger.from_url(queue_url, wait_time_seconds=1, visibility_timeout=300)
        await first.open()
        received = await first.receive(10)
        assert len(received) == 1
        await first.close()  # a crash before the commit: nothing was acknowledged
        second = SqsTrigger.from_url(queue_url, wait_time_seconds=10, visibility_timeout=300)
        await second.open()
        try:
            # Without the release it would stay hidden for its 300 s visibility timeout.
            again = await second.receive(10)
            assert [m.metadata["message_id"] for m in again] == [received[0].metadata["message_id"]]
            assert again[0].dedupe_key == received[0].dedupe_key
            assert again[0].metadata["receive_count"] == 2
            await second.ack(again)
        finally:
            await second.close()
            await CASE.cleanup(queue_url)

    run(scenario)


def test_fifo_queue_keeps_order_and_carries_group_and_sequence(port: int) -> None:
    url = CASE.url(f"herald-{uuid.uuid4().hex[:10]}.fifo")
    publish_url = url + "&message_group_id=sensor-7"

    async def scenario() -> None:
        await CASE.prepare(url)
        for n in range(15):
            await apublish(publish_url, json.dumps({"n": n}).encode())
        trigger = SqsTrigger.from_url(url, wait_time_seconds=1, visibility_timeout=30)
        await trigger.open()
        try:
            got: list[Any] = []
            while len(got) < 15:
                batch = await trigger.receive(10)
                assert batch, "the FIFO queue ran dry before 15 messages"
                got += batch
                await trigger.ack(batch)
            assert [m.json()["n"] for m in got] == list(range(15))
            assert {m.metadata["message_group_id"] for m in got} == {"sensor-7"}
            # (moto's sequence numbers are random, AWS's increase: only their presence is checked)
            assert all(m.metadata["sequence_number"] for m in got)
            assert len({m.dedupe_key for m in got}) == 15
        finally:
            await trigger.close()
            await CASE.cleanup(url)

    run(scenario)


def test_fifo_through_the_triggerer_one_event_per_message_in_order(tmp_path: Path, port: int) -> None:
    url = CASE.url(f"herald-{uuid.uuid4().hex[:10]}.fifo")
    harness = TriggererHarness(f"sqlite:///{tmp_path}/herald.db")

    async def scenario() -> None:
        await CASE.prepare(url)
        await harness.start(("readings", CASE.trigger(url)))
        for n in range(12):
            await apublish(url, json.dumps({"n": n}).encode())
        await harness.wait_events(12)
        await harness.wait_received(12)
        await harness.stop()
        await CASE.cleanup(url)

    try:
        run(scenario)
        events = harness.events()
        assert [e["payload"]["n"] for e in events] == list(range(12))
        assert all(e["message"]["message_group_id"] == "herald" for e in events)
    finally:
        harness.close()


def test_message_attributes_from_other_producers_become_headers(port: int, queue_url: str) -> None:
    async def scenario() -> None:
        await CASE.prepare(queue_url)
        async with admin(port) as client:
            await client.send_message(
                QueueUrl=parse_url(queue_url).queue_url,
                MessageBody='{"temp": 30}',
                MessageAttributes={
                    "source": {"DataType": "String", "StringValue": "sensor-9"},
                    "priority": {"DataType": "Number", "StringValue": "3"},
                    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
                },
            )
        trigger = SqsTrigger.from_url(queue_url, wait_time_seconds=5)
        await trigger.open()
        try:
            (message,) = await trigger.receive(10)
            assert message.headers == {"source": "sensor-9", "priority": "3", "blob": "AAE="}
            assert message.json() == {"temp": 30}
            assert "published_at" in message.metadata
            await trigger.ack([message])
        finally:
            await trigger.close()
            await CASE.cleanup(queue_url)

    run(scenario)


def test_airflow_queue_url_with_connection_and_airflow_payload(
    tmp_path: Path, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Airflow guide's trigger: `MessageQueueTrigger(queue="https://sqs.<region>.amazonaws.com/...")`."""
    name = f"herald-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("HERALD_CONN_AWS_DEFAULT", f"sqs+http://{KEY}:{KEY}@127.0.0.1:{port}?region=us-east-1")
    harness = TriggererHarness(f"sqlite:///{tmp_path}/herald.db")
    local_url = CASE.url(name)

    async def scenario() -> None:
        await CASE.prepare(local_url)
        # MessageQueueTrigger(queue=...) routes here once the registry knows the https form
        trigger = SqsTrigger.from_url(
            f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/{name}",
            aws_conn_id="aws_default",
            airflow_compat=True,
            wait_time_seconds=1,
        )
        await harness.start(("sqs_queue_asset", trigger))
        await apublish(local_url, b'{"order": 42}', {"source": "shop"})
        await harness.wait_events(1)
        await harness.wait_received(1)
        await harness.stop()
        await CASE.cleanup(local_url)

    try:
        run(scenario)
        (event,) = harness.events()
        batch = event["payload"]["message_batch"]
        assert batch[0]["Body"] == '{"order": 42}'
        assert batch[0]["MessageId"] == event["message"]["message_id"]
        assert batch[0]["MessageAttributes"]["source"]["StringValue"] == "shop"
        assert "ReceiptHandle" not in batch[0]
    finally:
        harness.close()


def test_message_queue_trigger_takes_airflow_queue_url() -> None:
    trigger = MessageQueueTrigger(queue="https://sqs.us-east-1.amazonaws.com/123456789012/orders")
    assert isinstance(trigger, SqsTrigger)
    assert trigger.address.queue_url == "https://sqs.us-east-1.amazonaws.com/123456789012/orders"


def test_publisher_reuses_one_client_per_connection(port: int, queue_url: str) -> None:
    async def scenario() -> None:
        await CASE.prepare(queue_url)
        await aclose_publishers()
        await asyncio.gather(*(apublish(queue_url, b"at once") for _ in range(20)))
        assert len(publishers) == 1  # the race to make the client left one
        async with admin(port) as client:
            url = parse_url(queue_url).queue_url
            await client.purge_queue(QueueUrl=url)
        await apublish(queue_url, b"one")
        clients = {id(p) for p in publishers.held()}
        await apublish(queue_url, b"two")
        await apublish(queue_url.replace("?", "?message_group_id=x&"), b"three")  # same connection
        assert {id(p) for p in publishers.held()} == clients
        assert await _counts(port, queue_url) == (3, 0)
        await CASE.cleanup(queue_url)
        await aclose_publishers()

    run(scenario)


def test_watcher_reconnects_after_the_server_restarts(tmp_path: Path, port: int) -> None:
    """moto keeps nothing across a restart, so the queue is made again; the watcher
    shows the outage, then resumes on its own."""
    exe = _moto_exe()
    assert exe is not None
    own_port = _free_port()
    servers = [_start_moto(exe, own_port)]
    name = f"herald-{uuid.uuid4().hex[:10]}"
    url = f"sqs+http://{KEY}:{KEY}@127.0.0.1:{own_port}/{ACCOUNT}/{name}?region=us-east-1"
    harness = TriggererHarness(f"sqlite:///{tmp_path}/herald.db")

    def state() -> str:
        return str(harness.watchers()[0]["state"])

    async def scenario() -> None:
        async with admin(own_port) as client:
            await client.create_queue(QueueName=name)
        await harness.start(("orders", SqsTrigger.from_url(url, wait_time_seconds=1, visibility_timeout=5)))
        await apublish(url, b'{"n": 1}')
        await harness.wait_events(1)

        await asyncio.to_thread(_stop_moto, servers[0])
        await harness.wait_for(lambda: state() == "reconnecting", timeout=60, what="state reconnecting")
        assert harness.watchers()[0]["last_error"]

        servers.append(await asyncio.to_thread(_start_moto, exe, own_port))
        async with admin(own_port) as client:
            await client.create_queue(QueueName=name)
        await harness.wait_for(lambda: state() == "running", timeout=60, what="state running again")
        await apublish(url, b'{"n": 2}')
        await harness.wait_events(2, timeout=60)
        await harness.wait_received(2)
        await harness.stop()
        await aclose_publishers()

    try:
        run(scenario)
        assert [e["payload"]["n"] for e in harness.events()] == [1, 2]
    finally:
        harness.close()
        for proc in servers:
            if proc.poll() is None:
                _stop_moto(proc)
