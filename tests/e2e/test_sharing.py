"""Triggerers share the work (PostgreSQL, separate processes).

Non-shareable watchers are split by fair-share leases: each live triggerer
holds about n/k of them, a newcomer gets its share, a killed triggerer's
share moves to the living. Shareable queues (a Kafka consumer group, a Redis
stream's consumer group) are read by every triggerer at once. Either way every
message becomes exactly one event.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from herald.store.triggerers import LEASE_TTL
from herald.triggerer.triggerer import LEASE_RENEW
from tests.conftest import require_service, require_tool
from tests.e2e.conftest import Herald
from tests.e2e.test_cluster import Cluster

pytestmark = pytest.mark.timeout(300)

TEN_QUEUES = """
from herald import DAG, Asset, AssetWatcher, MessageQueueTrigger, task

@task
def noop():
    return None

def pinned(url):
    trigger = MessageQueueTrigger(url)
    trigger.shareable = False  # one reader at a time: the fair share of leases decides which
    return trigger

for i in range(10):
    queue = Asset(f"q{i}", watchers=[AssetWatcher(f"w{i}", pinned(f"local://share_q{i}"))])
    with DAG(f"on_q{i}", schedule=[queue]):
        noop()
"""

ONE_SHARED_QUEUE = """
from herald import DAG, Asset, AssetWatcher, MessageQueueTrigger, task

@task
def noop():
    return None

shared = Asset("shared", watchers=[AssetWatcher("w", MessageQueueTrigger({url!r}, **{options!r}))])
with DAG("on_shared", schedule=[shared]):
    noop()
"""


@pytest.fixture
def cluster(tmp_path: Path, pg_database: str) -> Iterator[Cluster]:
    c = Cluster(Herald(tmp_path / "home", pg_database))
    yield c
    c.stop_all()


def start_triggerer(cluster: Cluster, name: str) -> None:
    """Start `herald triggerer` and wait until it has loaded the DAGs (one migration at a time)."""
    cluster.start(name, "triggerer")
    log = cluster.herald.home / f"{name}.log"
    cluster.herald.wait_for(
        lambda: "triggerer:" in log.read_text() and "running" in log.read_text(), what=f"{name} to start"
    )


def alive(cluster: Cluster) -> dict[str, dict[str, Any]]:
    """`herald triggerers list`, the live ones, by the test's process name."""
    names = {proc.pid: name for name, proc in cluster.procs.items() if proc.poll() is None}
    rows = cluster.herald.cli_json("triggerers", "list")
    return {names[r["pid"]]: r for r in rows if r["alive"] and r["pid"] in names}


def shares(cluster: Cluster) -> dict[str, int]:
    """How many watcher leases each live triggerer holds."""
    return {name: len(row["leases"]) for name, row in alive(cluster).items()}


def balanced(cluster: Cluster, names: set[str], low: int, high: int, total: int = 10) -> Callable[[], bool]:
    def check() -> bool:
        held = shares(cluster)
        return set(held) == names and sum(held.values()) == total and all(low <= n <= high for n in held.values())

    return check


def payloads(herald: Herald) -> Counter[str]:
    """Every event's payload, counted: each message must be there once."""
    events = herald.cli_json("events", "list", "--limit", "100000")
    return Counter(json.dumps(e["extra"]["payload"], sort_keys=True) for e in events)


def test_two_triggerers_share_ten_watchers_a_third_takes_its_share_and_a_killed_ones_move(cluster: Cluster) -> None:
    herald = cluster.herald
    herald.write_dag("ten", TEN_QUEUES)
    sent: list[dict[str, Any]] = []

    def publish(tag: str) -> None:
        for q in range(10):
            bodies = [{"q": q, "n": f"{tag}-{j}"} for j in range(5)]
            herald.publish(f"share_q{q}", *bodies)
            sent.extend(bodies)

    start_triggerer(cluster, "triggerer-1")
    start_triggerer(cluster, "triggerer-2")
    herald.wait_for(balanced(cluster, {"triggerer-1", "triggerer-2"}, 4, 6), what="a 5/5 share (give or take 1)")
    publish("two")

    # A third joins: it takes its share from the two over theirs within one lease period.
    cluster.start("triggerer-3", "triggerer")
    herald.wait_for(lambda: "triggerer-3" in alive(cluster), what="triggerer-3's first heartbeat")
    herald.wait_for(
        balanced(cluster, {"triggerer-1", "triggerer-2", "triggerer-3"}, 3, 4),
        timeout=LEASE_TTL + 2 * LEASE_RENEW,
        what="a 4/3/3 share after triggerer-3 joined",
    )
    publish("three")

    # Two are killed (SIGKILL: no release, no goodbye): their leases expire and the last one takes all.
    cluster.kill("triggerer-1")
    cluster.kill("triggerer-3")
    herald.wait_for(lambda: shares(cluster) == {"triggerer-2": 10}, timeout=3 * LEASE_TTL, what="triggerer-2 alone")
    publish("one")

    herald.wait_for(lambda: sum(payloads(herald).values()) >= len(sent), timeout=60, what=f"{len(sent)} events")
    got = payloads(herald)
    assert sorted(got) == sorted(json.dumps(b, sort_keys=True) for b in sent)
    assert set(got.values()) == {1}, "a message became two events"
    assert all(w["state"] == "running" for w in herald.cli_json("watchers", "list"))


def consumed_by_both(cluster: Cluster, publish: Callable[[int], None], timeout: float = 60) -> None:
    """Publish a round at a time until both triggerers have delivered messages of the shared queue.

    By time, not rounds: a Kafka group's rebalance, or a triggerer's counts written
    with its heartbeat, take longer on a loaded machine.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publish(60)
        delivered = {name: row["received"] for name, row in alive(cluster).items()}
        if len(delivered) == 2 and all(n > 0 for n in delivered.values()):
            return
        time.sleep(0.5)
    raise AssertionError(f"one triggerer consumed everything: {alive(cluster)}\n{cluster.logs()}")


def run_shared(cluster: Cluster, url: str, options: dict[str, Any], send: Callable[[list[bytes]], None]) -> None:
    """Two triggerers on one shareable queue: both consume it, each message is one event."""
    herald = cluster.herald
    herald.write_dag("shared", ONE_SHARED_QUEUE.format(url=url, options=options))
    start_triggerer(cluster, "triggerer-1")
    start_triggerer(cluster, "triggerer-2")
    herald.wait_for(
        lambda: [r["consuming"] for r in alive(cluster).values()] == [["shared/w"], ["shared/w"]],
        what="both triggerers reading the shared queue",
    )
    sent: list[bytes] = []

    def publish(count: int) -> None:
        bodies = [json.dumps({"n": len(sent) + i}).encode() for i in range(count)]
        send(bodies)
        sent.extend(bodies)

    consumed_by_both(cluster, publish)
    herald.wait_for(lambda: sum(payloads(herald).values()) >= len(sent), timeout=90, what=f"{len(sent)} events")
    got = payloads(herald)
    assert sorted(got) == sorted(json.dumps(json.loads(b), sort_keys=True) for b in sent), "a message was lost"
    assert set(got.values()) == {1}, "a message became two events"
    [watcher] = herald.cli_json("watchers", "list")
    assert watcher["events"] == len(sent)

    # One stops cleanly: the other still reads the queue, so the watcher stays running,
    # and the lease (who writes the lag, who replays dead letters) moves at once.
    stopping = cluster.procs["triggerer-1"]
    stopping.send_signal(signal.SIGTERM)
    assert stopping.wait(60) == 0
    herald.wait_for(lambda: shares(cluster) == {"triggerer-2": 1}, timeout=2 * LEASE_RENEW + 5, what="the lease")
    [watcher] = herald.cli_json("watchers", "list")
    assert watcher["state"] == "running"


def test_two_triggerers_split_a_kafka_topics_six_partitions_through_the_consumer_group(cluster: Cluster) -> None:
    from confluent_kafka import Producer

    from tests.integration.kafka_mock import mock_kafka_cluster

    topic = f"shared-{uuid.uuid4().hex[:8]}"
    with mock_kafka_cluster() as kafka:
        kafka.create_topic(topic, partitions=6)
        # confluent-kafka: the mock cluster hands a second aiokafka member no partitions (kafka_mock.py)
        url = f"kafka://{kafka.bootstrap}/{topic}?group_id={topic}-group&client=confluent"
        producer = Producer({"bootstrap.servers": kafka.bootstrap})

        def send(bodies: list[bytes]) -> None:
            for i, body in enumerate(bodies):
                producer.produce(topic, body, partition=i % 6)
            assert producer.flush(10) == 0

        options = {"poll_timeout": 1.0, "session_timeout_ms": 6000, "heartbeat_interval_ms": 500}
        try:
            run_shared(cluster, url, options, send)
        finally:
            cluster.stop_all()  # before the mock cluster goes away


def test_two_triggerers_consume_one_redis_stream_as_one_consumer_group(cluster: Cluster) -> None:
    require_service("Redis", "127.0.0.1", 6379)
    import redis

    stream = f"shared-{uuid.uuid4().hex[:8]}"
    client = redis.Redis(host="127.0.0.1", port=6379)

    def send(bodies: list[bytes]) -> None:
        pipe = client.pipeline()
        for body in bodies:
            pipe.xadd(stream, {"body": body})
        pipe.execute()

    try:
        run_shared(cluster, f"redis://127.0.0.1:6379/0?stream={stream}&group=herald", {}, send)
    finally:
        client.delete(stream)
        client.close()


def test_two_triggerers_receive_from_one_sqs_queue_as_competing_consumers(cluster: Cluster) -> None:
    import asyncio

    from tests.integration.test_sqs import ACCOUNT, KEY, _free_port, _moto_exe, _start_moto, _stop_moto, admin

    exe = _moto_exe()
    if exe is None:
        require_tool("moto_server", "the SQS tests run on moto")
    assert exe is not None
    port = _free_port()
    moto = _start_moto(exe, port)
    queue = f"shared-{uuid.uuid4().hex[:8]}"

    async def create() -> str:
        async with admin(port) as client:
            made = await client.create_queue(QueueName=queue)
            return str(made["QueueUrl"])

    async def send_batches(bodies: list[bytes]) -> None:
        async with admin(port) as client:
            for i in range(0, len(bodies), 10):
                entries = [{"Id": str(j), "MessageBody": b.decode()} for j, b in enumerate(bodies[i : i + 10])]
                await client.send_message_batch(QueueUrl=queue_url, Entries=entries)

    try:
        queue_url = asyncio.run(create())
        url = f"sqs+http://{KEY}:{KEY}@127.0.0.1:{port}/{ACCOUNT}/{queue}?region=us-east-1"
        options = {"wait_time_seconds": 1, "visibility_timeout": 30}
        run_shared(cluster, url, options, lambda bodies: asyncio.run(send_batches(bodies)))
    finally:
        cluster.stop_all()  # before moto goes away
        _stop_moto(moto)


def publisher(url: str) -> Callable[[list[bytes]], None]:
    """Send bodies to `url` through Herald's own publisher (one connection, reused)."""
    import asyncio

    from herald.publishing import aclose_publishers, apublish

    def send(bodies: list[bytes]) -> None:
        async def all_of_them() -> None:
            try:
                for body in bodies:
                    await apublish(url, body)
            finally:
                await aclose_publishers()

        asyncio.run(all_of_them())

    return send


def test_two_triggerers_consume_one_rabbitmq_queue(cluster: Cluster) -> None:
    require_service("RabbitMQ", "127.0.0.1", 5672)
    url = f"amqp://guest:guest@127.0.0.1:5672/%2F?queue=shared-{uuid.uuid4().hex[:8]}"
    run_shared(cluster, url, {}, publisher(url))


def test_two_triggerers_fetch_from_one_jetstream_durable_consumer(cluster: Cluster) -> None:
    require_service("NATS", "127.0.0.1", 4222)
    name = f"shared-{uuid.uuid4().hex[:8]}"
    url = f"nats://127.0.0.1:4222/{name}.events?stream={name}&durable=herald"
    run_shared(cluster, url, {"ack_wait": 10, "fetch_timeout": 1}, publisher(url))


def test_two_triggerers_claim_rows_of_one_postgresql_queue_table(cluster: Cluster) -> None:
    database = cluster.herald.env["HERALD_DATABASE_URL"].rsplit("/", 1)[1]
    url = f"postgres://postgres@127.0.0.1:5432/{database}?table=shared_{uuid.uuid4().hex[:8]}&wait_seconds=0.5"
    run_shared(cluster, url, {}, publisher(url))


def test_two_triggerers_read_one_local_queue_each_locking_its_own_rows(cluster: Cluster) -> None:
    herald = cluster.herald
    queue = f"shared_{uuid.uuid4().hex[:8]}"
    run_shared(cluster, f"local://{queue}", {}, lambda bodies: herald.publish(queue, *bodies))


def test_triggerers_list_shows_each_one_and_what_it_holds(cluster: Cluster) -> None:
    herald = cluster.herald
    herald.write_dag("ten", TEN_QUEUES)
    start_triggerer(cluster, "triggerer-1")
    herald.wait_for(lambda: shares(cluster) == {"triggerer-1": 10}, what="triggerer-1 holding all ten")
    herald.wait_for(
        lambda: len(alive(cluster)["triggerer-1"]["consuming"]) == 10, what="the heartbeat listing what it reads"
    )
    [row] = herald.cli_json("triggerers", "list")
    assert row["name"] == f"triggerer:{row['hostname']}:{cluster.procs['triggerer-1'].pid}"
    assert row["leases"] == row["consuming"] == sorted(f"q{i}/w{i}" for i in range(10))
    code, out = herald.cli("triggerers", "list")
    assert code == 0 and "Triggerers" in out and "True" in out, out
