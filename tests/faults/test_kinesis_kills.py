"""kill -9 Herald while it reads a Kinesis stream: every record is exactly one event.

Kinesis has no acknowledgement, so this is the test of the checkpoints committed
with the events (docs/adr/0003-stream-checkpoints.md): after each kill the
restarted triggerer reads every shard on from what the database holds. A shard
is split between two kills, so a restart also finds a closed parent and its children.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from herald import publish
from herald.publishing import close_publishers
from herald.store import tables as t
from tests.e2e.conftest import Herald
from tests.faults.test_kills import DRAIN_TIMEOUT, KILLS, MESSAGES, TEST_TIMEOUT, Ledger
from tests.integration.test_kinesis import _free_port, admin, create_stream, start_moto_kinesis, stop_moto, stream_url

DAG = """
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

jobs = Asset("jobs", watchers=[AssetWatcher("w", MessageQueueTrigger({url!r}))])

@dag(schedule=[jobs])
def faulty():
    @task(retries=5)
    def work(triggering_asset_events):
        return triggering_asset_events[jobs][0].extra["payload"]["n"]
    work()

faulty()
"""

#: moto answers one PutRecord at a time; CI keeps the run short
COUNT = min(MESSAGES, 150)


@pytest.fixture(scope="module")
def moto_port() -> Iterator[int]:
    port = _free_port()
    proc = start_moto_kinesis(port)
    try:
        yield port
    finally:
        stop_moto(proc)


@pytest.fixture
def stream(moto_port: int) -> str:
    name = f"faults-{uuid.uuid4().hex[:10]}"
    asyncio.run(create_stream(moto_port, name, 2))
    return name


@pytest.fixture
def ledger(herald: Herald) -> Iterator[Ledger]:
    led = Ledger(herald.env["HERALD_DATABASE_URL"])
    yield led
    led.close()


def watch(herald: Herald, url: str) -> None:
    herald.write_dag("faulty", DAG.format(url=url))


def split_first_open_shard(port: int, stream: str) -> str:
    async def split() -> str:
        async with admin(port) as client:
            shards = (await client.list_shards(StreamName=stream))["Shards"]
            shard = next(s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"])
            low, high = int(shard["HashKeyRange"]["StartingHashKey"]), int(shard["HashKeyRange"]["EndingHashKey"])
            await client.split_shard(
                StreamName=stream, ShardToSplit=shard["ShardId"], NewStartingHashKey=str((low + high) // 2)
            )
            return str(shard["ShardId"])

    return asyncio.run(split())


def last_sequences(port: int, stream: str) -> dict[str, str]:
    """The sequence number of the last record of each shard that has records."""

    async def read() -> dict[str, str]:
        last: dict[str, str] = {}
        async with admin(port) as client:
            for shard in (await client.list_shards(StreamName=stream))["Shards"]:
                iterator = (
                    await client.get_shard_iterator(
                        StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                    )
                )["ShardIterator"]
                while iterator:
                    response = await client.get_records(ShardIterator=iterator)
                    for record in response["Records"]:
                        last[shard["ShardId"]] = record["SequenceNumber"]
                    if not response["Records"]:
                        break
                    iterator = response.get("NextShardIterator")
        return last

    return asyncio.run(read())


def committed_checkpoints(ledger: Ledger) -> dict[str, str]:
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(t.stream_checkpoint.c.position_key, t.stream_checkpoint.c.position)).all()
    return {str(k): str(v) for k, v in rows}


@pytest.mark.timeout(TEST_TIMEOUT)
def test_random_kills_and_a_split_lose_and_double_nothing(
    herald: Herald, ledger: Ledger, moto_port: int, stream: str
) -> None:
    url = stream_url(moto_port, stream, poll_interval=0.1, shard_refresh_interval=1)
    try:
        watch(herald, url)
        herald.start()
        herald.wait_for(
            lambda: [w for w in herald.cli_json("watchers", "list") if w["state"] == "running"], what="the watcher"
        )

        def send() -> None:
            for i in range(COUNT):
                publish(url, {"n": i})

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        rng = random.Random(COUNT)
        for kill in range(KILLS):
            time.sleep(rng.uniform(0.5, 1.5))
            herald.kill()
            if kill == 0:
                split_first_open_shard(moto_port, stream)  # the restart finds a closed parent
            herald.start()
        sender.join(DRAIN_TIMEOUT)
        assert not sender.is_alive(), "publishing never finished"
        herald.wait_for(lambda: ledger.drained(COUNT), timeout=DRAIN_TIMEOUT, what=f"{COUNT} records drained")
        ledger.check(COUNT)
        herald.stop()
        # What the database holds is where each shard ends: nothing left unread.
        assert committed_checkpoints(ledger) == last_sequences(moto_port, stream)
    finally:
        close_publishers()


@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
def test_crash_at_the_commit_boundary(herald: Herald, ledger: Ledger, moto_port: int, stream: str, point: str) -> None:
    url = stream_url(moto_port, stream, poll_interval=0.1)
    n = 40
    try:
        for i in range(n):
            publish(url, {"n": i})
    finally:
        close_publishers()
    watch(herald, url)
    herald.start(extra_env={"HERALD_FAULT": f"{point}:1"}, wait=False)
    herald.wait_for(lambda: herald.proc is not None and herald.proc.poll() is not None, 60, f"the crash at {point}")
    assert herald.proc is not None and herald.proc.returncode == 137
    herald.proc = None
    herald.start()
    herald.wait_for(lambda: ledger.drained(n), timeout=DRAIN_TIMEOUT, what=f"{n} records drained")
    ledger.check(n)
    stored: Any = committed_checkpoints(ledger)
    assert stored == last_sequences(moto_port, stream)
