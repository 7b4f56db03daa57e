"""Amazon Kinesis against moto's server: the delivery contract, checkpoints committed with
the events, every shard read, resharding while records flow, and `herald publish`.

The tests start moto (with AWS's resharding behaviour, see `moto_kinesis.py`)
on a free port of 127.0.0.1 for this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiobotocore.session import get_session

from herald.publishing import apublish
from herald.store import checkpoints
from herald.triggers.kinesis import KinesisTrigger, parse_url
from tests.conftest import reachable, require_service
from tests.integration.contract import BrokerCase, ContractSuite, run
from tests.integration.harness import TriggererHarness
from tests.integration.test_sqs import _free_port, _stop_moto

KEY = "testing"
LAUNCHER = Path(__file__).with_name("moto_kinesis.py")


def start_moto_kinesis(port: int) -> subprocess.Popen[bytes]:
    """moto's server with AWS's resharding behaviour, answering on 127.0.0.1:`port`."""
    proc = subprocess.Popen(
        [sys.executable, str(LAUNCHER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not reachable("127.0.0.1", port, 0.2):
        time.sleep(0.1)
    return proc


stop_moto = _stop_moto  # the SQS tests' own: terminate, then kill


def stream_url(port: int, stream: str, **options: Any) -> str:
    """The URL of `stream` on the moto at `port`."""
    query = "&".join(f"{k}={v}" for k, v in {"region_name": "us-east-1", **options}.items())
    return f"kinesis+http://{KEY}:{KEY}@127.0.0.1:{port}/{stream}?{query}"


@contextlib.asynccontextmanager
async def admin(port: int) -> AsyncIterator[Any]:
    """A plain aiobotocore client on moto, for what the tests do besides Herald."""
    async with get_session().create_client(
        "kinesis",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id=KEY,
        aws_secret_access_key=KEY,
    ) as client:
        yield client


async def create_stream(port: int, stream: str, shards: int) -> None:
    """Create `stream` with `shards` shards and wait until it is active."""
    async with admin(port) as client:
        await client.create_stream(StreamName=stream, ShardCount=shards)
        for _ in range(100):
            summary = await client.describe_stream_summary(StreamName=stream)
            if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"stream {stream} never became active")


@pytest.fixture(scope="module", autouse=True)
def moto_server() -> Iterator[int]:
    """moto's Kinesis on 127.0.0.1 for this module."""
    port = _free_port()
    proc = start_moto_kinesis(port)
    KinesisCase.port = port
    try:
        yield port
    finally:
        KinesisCase.port = None
        stop_moto(proc)


class KinesisCase(BrokerCase):
    broker: ClassVar[str] = "kinesis"
    headers: ClassVar[bool] = False  # Kinesis records have a partition key and data, no headers
    max_body: ClassVar[int] = 256 * 1024  # Kinesis takes 1 MiB per record; a smaller one keeps moto quick
    port: ClassVar[int | None] = None
    # Quick polls, so that the suite does not wait on idle shards.
    options: ClassVar[dict[str, Any]] = {"poll_interval": 0.05, "shard_refresh_interval": 0.5}

    no_kill_connection: ClassVar[str] = (
        "Kinesis is request/response over HTTP: there is no held connection to drop; "
        "a failed call reconnects and resumes from the committed checkpoints "
        "(test_crash_after_commit_before_ack_makes_no_duplicate)"
    )
    no_restart: ClassVar[str] = "moto keeps nothing across a restart: the stream and its records are gone"

    def require(self) -> None:
        require_service("Kinesis (moto_server)", "127.0.0.1", self.port or 0)

    def url(self, name: str) -> str:
        assert self.port is not None
        return stream_url(self.port, name)

    async def prepare(self, url: str) -> None:
        assert self.port is not None
        # Two shards: every contract test also reads more than one.
        await create_stream(self.port, parse_url(url).stream, 2)

    async def cleanup(self, url: str) -> None:
        assert self.port is not None
        async with admin(self.port) as client:
            await client.delete_stream(StreamName=parse_url(url).stream)


CASE = KinesisCase()


class TestKinesisContract(ContractSuite):
    """The contract as it applies to a stream: Kinesis has no acknowledgement, so what
    the other brokers redeliver, Kinesis reads again from the checkpoints committed
    with the events (the crash tests) or, without a triggerer, from where the
    stream starts (test_unacknowledged_messages_come_back_with_the_same_dedupe_keys)."""

    case = CASE


# -- Kinesis specifics ---------------------------------------------------------------------


@pytest.fixture
def port() -> int:
    CASE.require()
    assert CASE.port is not None
    return CASE.port


def trigger(url: str, **options: Any) -> KinesisTrigger:
    return KinesisTrigger(url, **{**KinesisCase.options, **options})


async def put(port: int, stream: str, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        await apublish(stream_url(port, stream), body)


async def receive_all(source: KinesisTrigger, count: int) -> list[Any]:
    got: list[Any] = []
    deadline = asyncio.get_running_loop().time() + 30
    while len(got) < count:
        assert asyncio.get_running_loop().time() < deadline, f"received {len(got)} of {count}"
        got += await source.receive(count - len(got))
    return got


def test_resume_reads_on_after_the_checkpoint(port: int) -> None:
    """`resume({shard: sequence})` before `open` reads that shard AFTER_SEQUENCE_NUMBER."""
    stream = f"resume-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        await create_stream(port, stream, 1)
        await put(port, stream, *({"n": n} for n in range(5)))
        first = trigger(stream_url(port, stream))
        await first.open()
        try:
            held = await receive_all(first, 5)
        finally:
            await first.close()
        assert [json.loads(m.body)["n"] for m in held] == [0, 1, 2, 3, 4]
        assert all(m.checkpoint == (m.metadata["shard_id"], m.metadata["sequence_number"]) for m in held)
        second = trigger(stream_url(port, stream))
        second.resume(dict([held[2].checkpoint]))
        await second.open()
        try:
            rest = await receive_all(second, 2)
        finally:
            await second.close()
        assert [json.loads(m.body)["n"] for m in rest] == [3, 4]
        assert [m.dedupe_key for m in rest] == [m.dedupe_key for m in held[3:]]

    run(scenario)


def test_latest_keeps_what_was_put_while_reconnecting(port: int) -> None:
    """A LATEST shard that reconnects before its first record reads on from when it first connected."""
    stream = f"relatest-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        await create_stream(port, stream, 1)
        await put(port, stream, {"n": "before"})
        source = trigger(stream_url(port, stream), initial_position="LATEST")
        await source.open()
        await source.close()
        await put(port, stream, {"n": "while away"})
        await source.open()
        try:
            got = await receive_all(source, 1)
        finally:
            await source.close()
        assert [m.json() for m in got] == [{"n": "while away"}]

    run(scenario)


def test_initial_position_latest_skips_what_was_there_before(port: int, database_url: str) -> None:
    stream = f"latest-{uuid.uuid4().hex[:8]}"
    url = stream_url(port, stream)
    harness = TriggererHarness(database_url)

    async def scenario() -> None:
        await create_stream(port, stream, 1)
        await put(port, stream, {"n": "old"})
        await harness.start(("latest", trigger(url, initial_position="latest")))
        await harness.wait_for(lambda: harness.watchers()[0]["state"] == "running", what="state running")
        await put(port, stream, {"n": "new"})
        await harness.wait_received(1)
        await harness.stop()
        # One shard keeps its order: had the old record been read, it would have come first.
        assert [e["payload"] for e in harness.events()] == [{"n": "new"}]

    try:
        run(scenario, harness)
    finally:
        harness.close()


async def reshard(port: int, stream: str, how: str) -> tuple[set[str], set[str]]:
    """Split the stream's one shard, or merge its two: returns (closed parents, children)."""
    async with admin(port) as client:
        shards = (await client.list_shards(StreamName=stream))["Shards"]
        if how == "split":
            (shard,) = shards
            middle = int(shard["HashKeyRange"]["EndingHashKey"]) // 2
            await client.split_shard(StreamName=stream, ShardToSplit=shard["ShardId"], NewStartingHashKey=str(middle))
        else:
            low, high = sorted(shards, key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))
            await client.merge_shards(
                StreamName=stream, ShardToMerge=low["ShardId"], AdjacentShardToMerge=high["ShardId"]
            )
        after = (await client.list_shards(StreamName=stream))["Shards"]
    parents = {s["ShardId"] for s in shards}
    children = {s["ShardId"] for s in after if s["ShardId"] not in parents}
    return parents, children


@pytest.mark.parametrize("how", ["split", "merge"])
def test_resharding_while_records_flow_loses_and_doubles_nothing(port: int, database_url: str, how: str) -> None:
    """Shards are split or merged while records are put: every record is one event, the
    parents' records all come before their children's, and each shard's checkpoint is its last record.

    The delivery is held while the stream is resharded, so that the parents still
    have records to give when the children appear, and small reads make the
    parents take many rounds: a reader that did not finish the parents first
    would interleave the children's records with theirs.
    """
    stream = f"{how}-{uuid.uuid4().hex[:8]}"
    url = stream_url(port, stream)
    harness = TriggererHarness(database_url)
    flowing = threading.Event()
    flowing.set()

    def hold(point: str) -> None:
        if point == "before_commit":
            flowing.wait(30)

    async def put_range(numbers: range) -> None:
        for n in numbers:
            await apublish(url, {"n": n})

    async def scenario() -> None:
        await create_stream(port, stream, 1 if how == "split" else 2)
        source = trigger(url, max_records=2, shard_refresh_interval=0.1)
        await harness.start((how, source), fault=hold)
        await put_range(range(0, 20))
        await harness.wait_events(10, timeout=30)
        flowing.clear()  # the next delivery waits: records pile up in the parents
        await put_range(range(20, 60))
        parents, children = await reshard(port, stream, how)
        await put_range(range(60, 90))  # into the children
        flowing.set()
        await put_range(range(90, 120))
        await harness.wait_received(120, timeout=60)
        watcher_id = int(harness.watchers()[0]["id"])
        committed = await harness.db.run(checkpoints.load, harness.db.engine, [watcher_id])
        await harness.stop()

        events = harness.events()
        assert sorted(e["payload"]["n"] for e in events) == list(range(120))
        assert harness.watchers()[0]["deduped"] == 0
        assert len(children) == (2 if how == "split" else 1)
        by_shard: dict[str, list[dict[str, Any]]] = {}
        for e in events:
            by_shard.setdefault(e["message"]["shard_id"], []).append(e)
        assert set(by_shard) <= parents | children
        assert sum(len(by_shard.get(sid, [])) for sid in children) >= 60, "the children's records"
        last_of_parents = max(e["id"] for sid in parents for e in by_shard.get(sid, []))
        first_of_children = min(e["id"] for sid in children for e in by_shard.get(sid, []))
        assert last_of_parents < first_of_children, "a child was read before its parents were finished"
        assert committed == {
            sid: max((e["message"]["sequence_number"] for e in got), key=int) for sid, got in by_shard.items()
        }

    try:
        run(scenario, harness)
    finally:
        flowing.set()
        harness.close()


def test_herald_publish_cli_puts_a_record(port: int) -> None:
    """`herald publish kinesis+http://...` goes through the pooled publisher."""
    stream = f"cli-{uuid.uuid4().hex[:8]}"
    url = stream_url(port, stream, partition_key="k1")
    asyncio.run(create_stream(port, stream, 1))
    done = subprocess.run(
        [str(Path(sys.executable).with_name("herald")), "publish", url, '{"via": "cli"}'],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")},
    )
    assert done.returncode == 0, done.stderr + done.stdout

    async def read() -> None:
        source = trigger(url)
        await source.open()
        try:
            (message,) = await receive_all(source, 1)
        finally:
            await source.close()
        assert message.json() == {"via": "cli"}
        assert message.key == "k1"
        assert message.metadata["partition_key"] == "k1"

    run(read)


def test_publisher_refuses_headers(port: int) -> None:
    stream = f"headers-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        await create_stream(port, stream, 1)
        with pytest.raises(ValueError, match="no headers"):
            await apublish(stream_url(port, stream), b"x", {"a": "b"})

    run(scenario)


def test_a_missing_stream_shows_on_the_watcher_and_is_read_once_created(port: int, database_url: str) -> None:
    stream = f"missing-{uuid.uuid4().hex[:8]}"
    url = stream_url(port, stream)
    harness = TriggererHarness(database_url)

    async def scenario() -> None:
        await harness.start(("missing", trigger(url)))
        await harness.wait_for(
            lambda: "ResourceNotFoundException" in (harness.watchers()[0]["last_error"] or ""),
            what="the missing stream on the watcher",
        )
        await create_stream(port, stream, 1)
        await put(port, stream, {"n": 1})
        await harness.wait_events(1, timeout=40)
        await harness.stop()
        assert [e["payload"] for e in harness.events()] == [{"n": 1}]

    try:
        run(scenario, harness)
    finally:
        harness.close()
