"""The Airflow guide's SQS and Kafka examples in Airflow's own spelling, on `herald standalone`.

Only the imports differ from Airflow (`from herald import ...`); the triggers
are written as Airflow's providers take them (`MessageQueueTrigger(queue=...)`,
`MessageQueueTrigger(scheme="sqs", sqs_queue=..., aws_conn_id=...)`,
`MessageQueueTrigger(scheme="kafka", topics=[...], apply_function="module.fn")`)
with the connections in `AIRFLOW_CONN_*` variables, and the tasks read the
payloads as in Airflow: `message_batch[0]["Body"]` for SQS, the
apply_function's return value for Kafka, whose `False` skips the message.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import require_service
from tests.e2e.conftest import Herald
from tests.integration.kafka_mock import MockKafkaCluster, mock_kafka_cluster
from tests.integration.test_sqs import _free_port, _moto_exe, _start_moto, _stop_moto, admin

MESSAGES = 20

SQS_DAG = """
import os

from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

# Airflow:
# from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
# from airflow.sdk import Asset, AssetWatcher, dag, task

SQS_QUEUE = os.environ["GUIDE_SQS_QUEUE"]

if os.environ["GUIDE_SPELLING"] == "queue":
    trigger = MessageQueueTrigger(queue=SQS_QUEUE)
else:
    trigger = MessageQueueTrigger(scheme="sqs", sqs_queue=SQS_QUEUE, aws_conn_id="aws_default")

sqs_queue_asset = Asset("sqs_queue_asset", watchers=[AssetWatcher(name="sqs_watcher", trigger=trigger)])


@dag(schedule=[sqs_queue_asset])
def event_driven_dag():
    @task
    def process_message(**context):
        triggering_asset_events = context["triggering_asset_events"]
        bodies = []
        for event in triggering_asset_events[sqs_queue_asset]:
            body = event.extra["payload"]["message_batch"][0]["Body"]
            print(f"Processing message: {body}")
            bodies.append(body)
        return bodies

    process_message()


event_driven_dag()
"""

KAFKA_DAG = """
import json
import os

from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

# Airflow:
# from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
# from airflow.sdk import Asset, AssetWatcher, dag, task

KAFKA_TOPIC = os.environ["GUIDE_KAFKA_TOPIC"]


def apply_function(*args, **kwargs):
    message = args[-1]
    val = json.loads(message.value())
    print(f"Value in message is {val}")
    if val["status"] == "test":
        return False
    return {**val, "topic": message.topic(), "key": message.key().decode(), "partition": message.partition()}


trigger = MessageQueueTrigger(
    scheme="kafka",
    topics=[KAFKA_TOPIC],
    apply_function="kafka_guide_dag.apply_function",
)

kafka_topic_asset = Asset("kafka_topic_asset", watchers=[AssetWatcher(name="kafka_watcher", trigger=trigger)])


@dag(schedule=[kafka_topic_asset])
def event_driven_dag():
    @task
    def process_message(**context):
        triggering_asset_events = context["triggering_asset_events"]
        for event in triggering_asset_events[kafka_topic_asset]:
            print(f"Processing message: {event.extra['payload']}")
            return event.extra["payload"]

    process_message()


event_driven_dag()
"""


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


@pytest.mark.parametrize("spelling", ["queue", "scheme"])
def test_guide_sqs_example_in_airflow_spelling_runs_once_per_message(
    herald: Herald, moto_port: int, spelling: str
) -> None:
    name = f"guide-{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        async with admin(moto_port) as client:
            await client.create_queue(QueueName=name)

    asyncio.run(create())
    # The guide's queue= form takes the queue URL as AWS shows it; the connection's
    # endpoint_url sends the calls to moto, as it would with Airflow.
    queue_url = (
        f"https://sqs.us-east-1.amazonaws.com/123456789012/{name}"
        if spelling == "queue"
        else f"http://127.0.0.1:{moto_port}/123456789012/{name}"
    )
    connection = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"region_name": "us-east-1", "endpoint_url": f"http://127.0.0.1:{moto_port}"},
    }
    herald.env.update(
        GUIDE_SQS_QUEUE=queue_url, GUIDE_SPELLING=spelling, AIRFLOW_CONN_AWS_DEFAULT=json.dumps(connection)
    )
    herald.write_dag("sqs_guide_dag", SQS_DAG)
    herald.start()
    bodies = [json.dumps({"order": i}) for i in range(MESSAGES)]

    async def send() -> None:
        async with admin(moto_port) as client:
            local_url = f"http://127.0.0.1:{moto_port}/123456789012/{name}"
            for body in bodies:  # as any producer sends them: plain SendMessage
                await client.send_message(QueueUrl=local_url, MessageBody=body)

    asyncio.run(send())
    runs = herald.wait_runs(MESSAGES, "event_driven_dag", timeout=120)
    assert len(runs) == MESSAGES and {r["state"] for r in runs} == {"success"}
    processed = [herald.cli_json("runs", "show", r["run_id"])["tasks"][0]["result"] for r in runs]
    assert all(len(p) == 1 for p in processed)
    assert sorted(p[0] for p in processed) == sorted(bodies)
    log = herald.cli_json("tasks", "logs", runs[0]["run_id"], "process_message")["log"]
    assert log.startswith('Processing message: {"order": ')


def test_guide_kafka_example_apply_function_false_skips_the_message(herald: Herald, kafka: MockKafkaCluster) -> None:
    topic = f"guide-{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic, partitions=3)
    connection = {
        "conn_type": "kafka",
        "extra": {"bootstrap.servers": kafka.bootstrap, "group.id": f"guide-{topic}", "auto.offset.reset": "earliest"},
    }
    herald.env.update(GUIDE_KAFKA_TOPIC=topic, AIRFLOW_CONN_KAFKA_DEFAULT=json.dumps(connection))
    herald.write_dag("kafka_guide_dag", KAFKA_DAG)
    herald.start()
    values = [{"order": i, "status": "test" if i % 4 == 0 else "paid"} for i in range(MESSAGES)]

    async def send() -> None:
        from herald.publishing import aclose_publishers, apublish

        for value in values:
            await apublish(f"kafka://{kafka.bootstrap}/{topic}?key=k{value['order'] % 3}", value)
        await aclose_publishers()

    asyncio.run(send())
    wanted = [v for v in values if v["status"] != "test"]
    herald.wait_runs(len(wanted), "event_driven_dag", timeout=120)
    herald.wait_for(lambda: herald.cli_json("watchers", "list")[0]["received"] == MESSAGES, what="all messages")
    runs = herald.runs("event_driven_dag")
    assert len(runs) == len(wanted) and {r["state"] for r in runs} == {"success"}
    results = [herald.cli_json("runs", "show", r["run_id"])["tasks"][0]["result"] for r in runs]
    assert sorted(r["order"] for r in results) == [v["order"] for v in wanted]
    assert all(
        r["topic"] == topic and r["key"] == f"k{r['order'] % 3}" and r["partition"] in (0, 1, 2) for r in results
    )
    watcher = herald.cli_json("watchers", "list")[0]
    assert (watcher["events"], watcher["skipped"], watcher["dead_lettered"]) == (len(wanted), MESSAGES - len(wanted), 0)


ASSET_DAGS = """
from herald import Asset, asset


@asset(schedule=None, uri="s3://bucket/raw_orders", group="raw")
def raw_orders(self, context):
    return {"uri": self.uri, "group": self.group, "run_id": context["run_id"]}


@asset(schedule=raw_orders)
def order_report(raw_orders, context):
    events = context["triggering_asset_events"][raw_orders]
    return {"inlet_uri": raw_orders.uri, "events": len(events)}
"""


def test_asset_decorator_dags_chain_through_their_asset(herald: Herald) -> None:
    herald.write_dag("asset_dags", ASSET_DAGS)
    herald.start()
    herald.wait_for(lambda: len(herald.cli_json("dags", "list")) == 2, what="both @asset DAGs")
    code, out = herald.cli("dags", "trigger", "raw_orders")
    assert code == 0, out
    (first,) = herald.wait_runs(1, "raw_orders")
    (report,) = herald.wait_runs(1, "order_report")
    assert first["state"] == report["state"] == "success"
    produced = herald.cli_json("runs", "show", first["run_id"])["tasks"][0]["result"]
    assert produced == {"uri": "s3://bucket/raw_orders", "group": "raw", "run_id": first["run_id"]}
    consumed = herald.cli_json("runs", "show", report["run_id"])["tasks"][0]["result"]
    assert consumed == {"inlet_uri": "s3://bucket/raw_orders", "events": 1}


AIRFLOW_TRIGGER_DAG = """
import asyncio
import os

from herald import Asset, AssetWatcher, BaseEventTrigger, TriggerEvent, dag, task

# Airflow:
# from airflow.sdk import Asset, AssetWatcher, dag, task
# from airflow.triggers.base import BaseEventTrigger, TriggerEvent


class LinesTrigger(BaseEventTrigger):
    # each line's number names it: a restart that reads the file again makes no second event
    dedupe_on = "n"

    def __init__(self, path, poll_interval=0.05):
        super().__init__()
        self.path = path
        self.poll_interval = poll_interval

    def serialize(self):
        return ("lines_dag.LinesTrigger", {"path": self.path, "poll_interval": self.poll_interval})

    async def run(self):
        seen = 0
        while True:
            lines = open(self.path).read().splitlines() if os.path.exists(self.path) else []
            for line in lines[seen:]:
                yield TriggerEvent({"line": line, "n": seen})
                seen += 1
            await asyncio.sleep(self.poll_interval)


lines = Asset("lines", watchers=[AssetWatcher(name="lines_watcher", trigger=LinesTrigger(os.environ["LINES_FILE"]))])


@dag(schedule=[lines])
def on_line():
    @task
    def read(*, triggering_asset_events):
        return [e.extra["payload"] for e in triggering_asset_events[lines]]

    read()


on_line()
"""


def test_an_airflow_style_trigger_runs_as_a_watcher_and_says_what_it_guarantees(herald: Herald) -> None:
    lines = herald.home / "lines.txt"
    lines.write_text("a\nb\n")
    herald.write_dag("lines_dag", AIRFLOW_TRIGGER_DAG)
    herald.start({"LINES_FILE": str(lines)})
    done = herald.wait_runs(2, "on_line", timeout=90)
    details = [herald.cli_json("runs", "show", r["run_id"]) for r in done]
    assert [d["state"] for d in details] == ["success", "success"]
    # one run per event, each with the TriggerEvent's payload as extra["payload"], as Airflow stores it
    assert sorted(d["tasks"][0]["result"][0]["line"] for d in details) == ["a", "b"]
    (watcher,) = herald.cli_json("watchers", "list")
    assert watcher["url"] == "airflow-trigger:lines_dag.LinesTrigger"
    assert watcher["delivery"].startswith("at most once from run(), deduplicated on the payload's 'n'")
    # After a restart the trigger reads the file from the start again: only the new line makes a run
    herald.stop()
    with lines.open("a") as f:
        f.write("c\n")
    herald.start({"LINES_FILE": str(lines)})
    herald.wait_runs(3, "on_line", timeout=90)
    herald.wait_for(lambda: herald.cli_json("watchers", "list")[0]["deduped"] >= 2, what="the re-read lines deduped")
    assert len(herald.runs("on_line")) == 3
