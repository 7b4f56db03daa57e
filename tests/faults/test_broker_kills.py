"""The kill -9 harness against every broker: nothing lost, nothing doubled, nothing left behind."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from herald import MessageQueueTrigger, publish
from herald.publishing import close_publishers
from tests.conftest import require_service
from tests.e2e.conftest import Herald
from tests.faults.test_kills import DRAIN_TIMEOUT, KILLS, MESSAGES, TEST_TIMEOUT, Ledger
from tests.integration.kafka_mock import MockKafkaCluster, mock_kafka_cluster
from tests.integration.test_sqs import _free_port, _moto_exe, _start_moto, _stop_moto, admin

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


@pytest.fixture(scope="module")
def moto_port() -> Iterator[int]:
    exe = _moto_exe()
    assert exe is not None, "moto_server is not installed (pip install 'moto[server]')"
    port = _free_port()
    proc = _start_moto(exe, port)
    try:
        yield port
    finally:
        _stop_moto(proc)


@pytest.fixture(scope="module")
def kafka() -> Iterator[MockKafkaCluster]:
    with mock_kafka_cluster() as cluster:
        yield cluster


def make_url(broker: str, request: pytest.FixtureRequest) -> str:
    """A fresh queue of `broker`, created where it must exist before publishing."""
    uid = uuid.uuid4().hex[:10]
    if broker == "redis":
        require_service("Redis", "127.0.0.1", 6379)
        # a killed triggerer's pending entries are claimed after 3 s idle (default 30 s)
        return f"redis://127.0.0.1:6379/0?stream=faults-{uid}&group=herald&claim_idle_ms=3000"
    if broker == "rabbitmq":
        require_service("RabbitMQ", "127.0.0.1", 5672)
        return f"amqp://guest:guest@127.0.0.1:5672/%2F?queue=faults-{uid}"
    if broker == "nats":
        require_service("NATS", "127.0.0.1", 4222)
        # ack_wait: what a killed triggerer received and never acknowledged comes back in 3 s
        return f"nats://127.0.0.1:4222/faults.{uid}?stream=FAULTS_{uid}&durable=herald&ack_wait=3"
    if broker == "postgres":
        require_service("PostgreSQL", "127.0.0.1", 5432)
        return f"postgres://postgres@127.0.0.1:5432/test?table=faults_{uid}"
    if broker == "mqtt":
        require_service("Mosquitto", "127.0.0.1", 1883)
        return f"mqtt://127.0.0.1:1883/faults/{uid}?qos=1"
    if broker == "sqs":
        port: int = request.getfixturevalue("moto_port")
        queue = f"faults-{uid}"

        async def create() -> None:
            async with admin(port) as client:
                await client.create_queue(QueueName=queue, Attributes={"VisibilityTimeout": "5"})

        asyncio.run(create())
        return f"sqs+http://testing:testing@127.0.0.1:{port}/123456789012/{queue}?region=us-east-1&wait_time_seconds=1"
    if broker == "kafka":
        cluster: MockKafkaCluster = request.getfixturevalue("kafka")
        cluster.create_topic(f"faults-{uid}", partitions=3)
        return f"kafka://{cluster.bootstrap}/faults-{uid}?group_id=faults-{uid}&session_timeout_ms=6000&max_poll_interval_ms=10000&heartbeat_interval_ms=1000"
    raise AssertionError(broker)


def left_in_broker(url: str) -> int | None:
    """What the broker still holds for the watcher's consumer (None where it cannot tell)."""

    async def measure() -> int | None:
        trigger = MessageQueueTrigger(url)
        await trigger.open()
        try:
            return await trigger.lag()
        finally:
            await trigger.close()

    return asyncio.run(measure())


# MQTT: Mosquitto keeps at most 1,000 messages for a session while its client is away
# (max_queued_messages); SQS: moto answers one publish at a time, slowly; Kafka: each
# restart waits for the killed group member's session to expire (6 s) before the
# partitions move, so CI keeps its run short with fewer messages.
#: brokers that give a dead consumer's unacknowledged messages back after a delay (a
#: claim of idle pending entries, a visibility timeout, JetStream's ack_wait), and whose
#: lag can be read without joining the consumers (Kafka's would rebalance the group,
#: MQTT's would take over the session)
REDELIVERED_LATER = {"redis", "sqs", "nats"}

SIZES: dict[str, Callable[[int], int]] = {
    "mqtt": lambda n: min(n, 500),
    "sqs": lambda n: min(n, 500),
    "kafka": lambda n: min(n, 300),
}


@pytest.mark.timeout(TEST_TIMEOUT)
@pytest.mark.parametrize("broker", ["redis", "rabbitmq", "nats", "postgres", "mqtt", "sqs", "kafka"])
def test_random_kills_lose_and_double_nothing(broker: str, request: pytest.FixtureRequest, tmp_path: Any) -> None:
    url = make_url(broker, request)
    n = SIZES.get(broker, lambda m: m)(MESSAGES)
    herald = Herald(tmp_path / "home", f"sqlite:///{tmp_path}/herald.db")
    ledger = Ledger(herald.env["HERALD_DATABASE_URL"])
    try:
        herald.write_dag("faulty", DAG.format(url=url))
        herald.start()
        herald.wait_for(
            lambda: [w for w in herald.cli_json("watchers", "list") if w["state"] == "running"], what="the watcher"
        )

        def send() -> None:
            for i in range(n):
                publish(url, {"n": i})

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        rng = random.Random(n)
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.5, 1.5))
            herald.kill()
            herald.start()
        sender.join(DRAIN_TIMEOUT)
        herald.wait_for(lambda: ledger.drained(n), timeout=DRAIN_TIMEOUT, what=f"{n} messages drained")
        if broker in REDELIVERED_LATER:
            # Entries a killed triggerer committed but never acknowledged come back only
            # after a delay (a claim of its idle pending entries, a visibility timeout);
            # the running Herald then turns them away by their dedupe key and acks them.
            herald.wait_for(lambda: left_in_broker(url) in (None, 0), timeout=DRAIN_TIMEOUT, what=f"{broker} emptied")
        ledger.check(n)
        herald.stop()
        left = left_in_broker(url)
        assert left in (None, 0), f"{left} message(s) left in {broker}"
    finally:
        close_publishers()  # the connections `publish` opened here must not outlive the test
        if herald.proc is not None:
            herald.stop()
        ledger.close()
