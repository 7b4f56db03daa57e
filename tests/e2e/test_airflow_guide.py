"""The SQS and Kafka DAGs of Airflow's event-driven scheduling guide, on Herald, 100 messages each."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from herald.publishing import aclose_publishers, apublish
from tests.conftest import require_service
from tests.e2e.conftest import Herald
from tests.integration.kafka_mock import MockKafkaCluster, mock_kafka_cluster
from tests.integration.test_sqs import _free_port, _moto_exe, _start_moto, _stop_moto, admin

GUIDE = Path(__file__).resolve().parents[2] / "examples" / "airflow_guide"
MESSAGES = 100


@pytest.fixture(scope="module")
def moto_port() -> Iterator[int]:
    exe = _moto_exe()
    if exe is None:
        require_service("moto_server (pip install 'moto[server]')", "127.0.0.1", 1)
    assert exe is not None
    port = _free_port()
    proc = _start_moto(exe, port)
    try:
        require_service("moto_server", "127.0.0.1", port)
        yield port
    finally:
        _stop_moto(proc)


@pytest.fixture(scope="module")
def kafka() -> Iterator[MockKafkaCluster]:
    with mock_kafka_cluster() as cluster:
        yield cluster


def test_airflow_sqs_example_runs_once_per_message(herald: Herald, moto_port: int) -> None:
    queue = f"guide-{uuid.uuid4().hex[:8]}"
    url = f"sqs+http://testing:testing@127.0.0.1:{moto_port}/123456789012/{queue}?region=us-east-1"

    async def create() -> None:
        async with admin(moto_port) as client:
            await client.create_queue(QueueName=queue)

    asyncio.run(create())
    shutil.copy(GUIDE / "sqs_example_dag.py", herald.dags / "sqs_example_dag.py")
    herald.env["HERALD_EXAMPLE_SQS_URL"] = url
    herald.start()
    bodies = [json.dumps({"order": i}) for i in range(MESSAGES)]

    async def send() -> None:

        for body in bodies:
            await apublish(url, body)
        await aclose_publishers()

    asyncio.run(send())
    runs = herald.wait_runs(MESSAGES, "sqs_event_driven_dag", timeout=120)
    assert len(runs) == MESSAGES and {r["state"] for r in runs} == {"success"}
    processed = [herald.cli_json("runs", "show", r["run_id"])["tasks"][0]["result"] for r in runs]
    assert all(len(p) == 1 for p in processed)
    assert sorted(p[0] for p in processed) == sorted(bodies)
    log = herald.cli_json("tasks", "logs", runs[0]["run_id"], "process_message")["log"]
    assert log.startswith("Processing message: {")


def test_airflow_kafka_example_with_its_apply_function(herald: Herald, kafka: MockKafkaCluster) -> None:
    topic = f"guide-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic, partitions=3)
    url = f"kafka://{kafka.bootstrap}/{topic}"
    shutil.copy(GUIDE / "kafka_example_dag.py", herald.dags / "kafka_example_dag.py")
    herald.env["HERALD_EXAMPLE_KAFKA_URL"] = f"{url}?group_id=herald-guide-{topic}"
    herald.start()
    values = [{"order": i, "status": "test" if i % 5 == 0 else "paid"} for i in range(MESSAGES)]

    async def send() -> None:

        for value in values:
            await apublish(url, value)
        await aclose_publishers()

    asyncio.run(send())
    wanted = [v for v in values if v["status"] != "test"]
    runs = herald.wait_runs(len(wanted), "event_driven_dag", timeout=120)
    herald.wait_for(lambda: herald.cli_json("watchers", "list")[0]["received"] == MESSAGES, what="all messages")
    runs = herald.runs("event_driven_dag")
    assert len(runs) == len(wanted) and {r["state"] for r in runs} == {"success"}
    results = [herald.cli_json("runs", "show", r["run_id"])["tasks"][0]["result"] for r in runs]
    assert sorted(r["order"] for r in results) == [v["order"] for v in wanted]
    watcher = herald.cli_json("watchers", "list")[0]
    assert (watcher["events"], watcher["skipped"], watcher["dead_lettered"]) == (len(wanted), MESSAGES - len(wanted), 0)
