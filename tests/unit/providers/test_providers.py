"""Airflow's provider trigger spelling: argument translation, refusals, payload shapes and message filtering.

Messages are built by hand and run through the trigger's apply step (`to_payload`), as the triggerer does.
"""

from __future__ import annotations

import json
import sys
import types
import uuid
from typing import Any

import pytest

from herald import AwaitMessageTrigger, MessageQueueTrigger, RedisPubSubTrigger, SqsSensorTrigger
from herald.providers.connections import get_connection
from herald.providers.filtering import MessageFilter
from herald.triggers.base import Message
from herald.triggers.kafka import KafkaTrigger
from herald.triggers.redis_pubsub import RedisPubSubTrigger as RedisPubSubBroker
from herald.triggers.sqs import SqsTrigger

AWS = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"


class _Receipt:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.receipt_handle = raw["ReceiptHandle"]
        self.raw = raw


def sqs_message(body: str, message_id: str = "m-1") -> Message:
    raw = {
        "MessageId": message_id,
        "ReceiptHandle": "rh-1",
        "MD5OfBody": "md5",
        "Body": body,
        "Attributes": {"SentTimestamp": "1764756000000"},
        "MessageAttributes": {"source": {"StringValue": "shop", "DataType": "String"}},
    }
    return Message(
        body=body.encode(), dedupe_key=f"orders/{message_id}", metadata={"message_id": message_id}, handle=_Receipt(raw)
    )


def kafka_message(value: bytes, key: bytes | None = b"k1", headers: dict[str, str] | None = None) -> Message:
    return Message(
        body=value,
        dedupe_key="t:2:41",
        key=key,
        headers=headers or {},
        metadata={
            "broker": "kafka",
            "topic": "t",
            "partition": 2,
            "offset": 41,
            "published_at": "2026-12-03T10:00:00+00:00",
        },
    )


@pytest.fixture(autouse=True)
def no_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("AIRFLOW_CONN_", "HERALD_CONN_")):
            monkeypatch.delenv(name)


def test_sqs_payload_is_airflows_message_batch_of_one() -> None:
    trigger = MessageQueueTrigger(scheme="sqs", sqs_queue=AWS)
    assert isinstance(trigger, SqsTrigger)
    keep, payload, _ = trigger.to_payload(sqs_message('{"order": 1}'))
    assert keep and payload["status"] == "success"
    (entry,) = payload["message_batch"]
    assert set(entry) == {"MessageId", "ReceiptHandle", "MD5OfBody", "Body", "Attributes", "MessageAttributes"}
    assert entry["Body"] == '{"order": 1}' and entry["MessageId"] == "m-1" and entry["ReceiptHandle"] == "rh-1"
    assert entry["MessageAttributes"]["source"]["StringValue"] == "shop"
    json.dumps(payload)


def test_sqs_arguments_translate_with_airflows_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    trigger = SqsSensorTrigger(sqs_queue=AWS)
    assert isinstance(trigger, SqsTrigger)
    assert (trigger.max_messages, trigger.wait_time_seconds, trigger.visibility_timeout) == (5, 1, None)
    assert trigger.address.queue_url == AWS and trigger.address.region == "us-east-1"
    assert MessageQueueTrigger(queue=AWS).address.queue_url == AWS  # type: ignore[attr-defined]
    # A local server's queue URL with the connection's endpoint, keys and region (the moto set-up).
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "AK",
                "password": "S/K",
                "extra": {"region_name": "eu-west-1", "endpoint_url": "http://127.0.0.1:5005"},
            }
        ),
    )
    local = SqsSensorTrigger(
        sqs_queue="http://127.0.0.1:5005/123456789012/orders",
        max_messages=10,
        wait_time_seconds=20,
        visibility_timeout=30,
        num_batches=3,
        waiter_delay=1,
    )
    assert local.address.queue_url == "http://127.0.0.1:5005/123456789012/orders"  # type: ignore[attr-defined]
    assert (local.address.region, local.address.access_key, local.address.secret_key) == ("eu-west-1", "AK", "S/K")  # type: ignore[attr-defined]
    assert (local.max_messages, local.wait_time_seconds, local.visibility_timeout) == (10, 20, 30)  # type: ignore[attr-defined]
    assert "S/K" not in json.dumps(local.describe())
    assert SqsSensorTrigger(sqs_queue=AWS, region_name="us-west-2").address.region == "us-west-2"  # type: ignore[attr-defined]


def test_sqs_refuses_what_it_would_silently_change() -> None:
    with pytest.raises(ValueError, match="delete_message_on_reception=False"):
        SqsSensorTrigger(sqs_queue=AWS, delete_message_on_reception=False)
    with pytest.raises(ValueError, match="verify"):
        SqsSensorTrigger(sqs_queue=AWS, verify=False)
    with pytest.raises(ValueError, match="botocore_config"):
        SqsSensorTrigger(sqs_queue=AWS, botocore_config={"retries": {}})
    with pytest.raises(TypeError, match="unexpected keyword argument 'batches'"):
        MessageQueueTrigger(scheme="sqs", sqs_queue=AWS, batches=3)
    with pytest.raises(ValueError, match="not recognized"):
        MessageQueueTrigger(scheme="pulsar", topic="x")
    with pytest.raises(ValueError, match="no trigger for scheme 'https'"):
        MessageQueueTrigger(queue="https://example.com/123/q")


@pytest.mark.parametrize(
    ("mode", "values", "config", "bodies", "kept"),
    [
        ("literal", ["yes", "ok"], None, ["yes", "no", "ok"], ["yes", "ok"]),
        (
            "jsonpath",
            None,
            "order.status",
            ['{"order": {"status": "paid"}}', '{"order": {}}'],
            ['{"order": {"status": "paid"}}'],
        ),
        (
            "jsonpath",
            ["paid"],
            "order.status",
            ['{"order": {"status": "paid"}}', '{"order": {"status": "test"}}'],
            ['{"order": {"status": "paid"}}'],
        ),
        (
            "jsonpath-ext",
            [2],
            "items[?(@.n > 1)].n",
            ['{"items": [{"n": 1}, {"n": 2}]}', '{"items": [{"n": 1}]}'],
            ['{"items": [{"n": 1}, {"n": 2}]}'],
        ),
    ],
)
def test_sqs_message_filtering_modes(mode: str, values: Any, config: Any, bodies: list[str], kept: list[str]) -> None:
    trigger = SqsSensorTrigger(
        sqs_queue=AWS, message_filtering=mode, message_filtering_match_values=values, message_filtering_config=config
    )
    assert [b for b in bodies if trigger.to_payload(sqs_message(b))[0]] == kept


def test_message_filter_errors_come_at_load_and_bad_bodies_become_dead_letters() -> None:
    with pytest.raises(ValueError, match="must be one of"):
        MessageFilter("regex")
    with pytest.raises(ValueError, match="invalid JSONPath"):
        MessageFilter("jsonpath", config="$[?")
    with pytest.raises(ValueError, match="needs message_filtering_match_values"):
        MessageFilter("literal")
    with pytest.raises(ValueError):
        MessageFilter("jsonpath", config="a").matches("not json")


def test_kafka_apply_function_gets_confluent_methods_and_falsy_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    def apply(prefix: str, message: Any, *, suffix: str) -> Any:
        seen.append(
            (
                message.value(),
                message.key(),
                message.topic(),
                message.partition(),
                message.offset(),
                message.headers(),
                message.timestamp(),
                message.error(),
                len(message),
            )
        )
        value = json.loads(message.value())
        return False if value["status"] == "test" else f"{prefix}{value['n']}{suffix}"

    module = types.ModuleType("guide_functions")
    module.apply = apply  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "guide_functions", module)
    trigger = MessageQueueTrigger(
        queue="kafka://127.0.0.1:9092/t",
        apply_function="guide_functions.apply",
        apply_function_args=["n="],
        apply_function_kwargs={"suffix": "!"},
    )
    assert isinstance(trigger, KafkaTrigger) and trigger.topics == ["t"] and trigger.poll_timeout == 1.0
    assert trigger.to_payload(kafka_message(b'{"status": "paid", "n": 5}', headers={"h": "v"})) == (True, "n=5!", None)
    assert trigger.to_payload(kafka_message(b'{"status": "test", "n": 6}'))[0] is False
    assert seen[0] == (b'{"status": "paid", "n": 5}', b"k1", "t", 2, 41, [("h", b"v")], (1, 1796292000000), None, 26)
    assert seen[1][5] is None  # no headers: None, as confluent-kafka gives


def test_kafka_connection_and_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="connection 'kafka_default' is not defined"):
        MessageQueueTrigger(scheme="kafka", topics=["t"], apply_function=lambda m: m)
    monkeypatch.setenv(
        "AIRFLOW_CONN_KAFKA_DEFAULT",
        json.dumps(
            {
                "conn_type": "kafka",
                "extra": {
                    "bootstrap.servers": "b1:9092",
                    "group.id": "g",
                    "auto.offset.reset": "smallest",
                    "enable.auto.commit": False,
                },
            }
        ),
    )
    trigger = MessageQueueTrigger(scheme="kafka", topics=["a", "b"], apply_function=lambda m: m.value(), poll_timeout=2)
    assert isinstance(trigger, KafkaTrigger)
    assert (trigger.bootstrap, trigger.topics, trigger.group_id, trigger.auto_offset_reset, trigger.poll_timeout) == (
        "b1:9092",
        ["a", "b"],
        "g",
        "earliest",
        2.0,
    )
    no_function = AwaitMessageTrigger(topics=["a"])
    assert no_function.to_payload(kafka_message(b"text"))[1] == "text"
    with pytest.raises(ValueError, match="commit_offset=False"):
        AwaitMessageTrigger(topics=["a"], commit_offset=False)
    with pytest.raises(ImportError, match="has no function 'missing'"):
        AwaitMessageTrigger(topics=["a"], apply_function="json.missing")
    with pytest.raises(ImportError, match="cannot import module"):
        AwaitMessageTrigger(topics=["a"], apply_function="no_such_module_x.fn")
    with pytest.raises(ValueError, match="topic pattern"):
        AwaitMessageTrigger(topics=["^orders.*"])
    with pytest.raises(ValueError, match="apply_function is required"):
        MessageQueueTrigger(queue="kafka://b:9092/t")
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", json.dumps({"extra": {"bootstrap.servers": "b", "linger.ms": 5}}))
    with pytest.raises(ValueError, match=r"'linger.ms' is not supported"):
        AwaitMessageTrigger(topics=["a"])


def test_redis_pubsub_payload_is_airflows_message(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="'redis_default' is not defined"):
        RedisPubSubTrigger(channels=["c"])
    monkeypatch.setenv("AIRFLOW_CONN_REDIS_DEFAULT", "redis://:pw@127.0.0.1:6380/?db=2")
    trigger = MessageQueueTrigger(scheme="redis+pubsub", channels=["a", "b"], poll_interval=1)
    assert isinstance(trigger, RedisPubSubBroker) and trigger.channels == ["a", "b"]
    described = trigger.describe()
    assert described["url"] == "redis+pubsub://:***@127.0.0.1:6380/2?channels=a,b"
    assert "at most once" in described["delivery"]
    message = Message(body=b"hello", dedupe_key="a:x", metadata={"channel": "a", "pattern": None})
    assert trigger.to_payload(message)[1] == {"type": "message", "pattern": None, "channel": "a", "data": "hello"}


def test_herald_url_spelling_is_unchanged_and_connections_parse_both_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    trigger = MessageQueueTrigger("sqs+http://k:s@127.0.0.1:5005/123456789012/q?region=us-east-1")
    _, payload, _ = trigger.to_payload(sqs_message('{"order": 1}'))
    assert payload == {"order": 1}  # Herald's decoded payload
    assert MessageQueueTrigger(queue="local://orders").describe()["url"] == "local://orders"
    monkeypatch.setenv("AIRFLOW_CONN_X", "aws://AK:S%2FK@/?region_name=eu-west-1&endpoint_url=http%3A%2F%2Fh%3A1")
    conn = get_connection("x")
    assert conn is not None and (conn.login, conn.password, conn.extra["endpoint_url"]) == ("AK", "S/K", "http://h:1")
    monkeypatch.setenv("HERALD_CONN_X", '{"conn_type": "aws", "extra": "{\\"region_name\\": \\"r\\"}"}')
    assert get_connection("x").extra == {"region_name": "r"}  # type: ignore[union-attr]


def test_dotted_apply_function_resolves_to_the_dag_file_being_loaded(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from herald.loader import load_file

    folder = tmp_path / "dags"
    folder.mkdir()
    stem = f"guide_{uuid.uuid4().hex[:8]}"
    (folder / f"{stem}.py").write_text(
        "from herald import MessageQueueTrigger\n"
        "LOADS = []\n"
        "LOADS.append(1)\n"
        "def apply_function(message):\n"
        "    return {'len': len(LOADS)}\n"
        f"trigger = MessageQueueTrigger(queue='kafka://127.0.0.1:9092/t', apply_function='{stem}.apply_function')\n"
    )
    (folder / "broken_dag.py").write_text(
        "from herald import MessageQueueTrigger\n"
        "trigger = MessageQueueTrigger(queue='kafka://127.0.0.1:9092/t', apply_function='broken_dag.later')\n"
        "def later(message):\n"
        "    return 1\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    load_file(str(folder / f"{stem}.py"))
    module = next(m for m in sys.modules.values() if getattr(m, "__file__", None) == str(folder / f"{stem}.py"))
    # Resolved to the module being loaded: the file was not imported a second time under its stem
    # (the loader then registers this very module under the stem).
    assert sys.modules[stem] is module
    assert module.trigger.apply_function.function is module.apply_function
    assert module.trigger.to_payload(kafka_message(b"x"))[1] == {"len": 1}
    with pytest.raises(ImportError, match="define it above the trigger"):
        load_file(str(folder / "broken_dag.py"))


def test_a_herald_url_connection_serves_the_airflow_spelling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_CONN_AWS_DEFAULT", "sqs+http://AK:SK@127.0.0.1:5005?region=eu-central-1")
    trigger = MessageQueueTrigger(queue=AWS)
    assert trigger.address.queue_url == "http://127.0.0.1:5005/123456789012/orders"  # type: ignore[attr-defined]
    assert (trigger.address.region, trigger.address.access_key) == ("eu-central-1", "AK")  # type: ignore[attr-defined]


def test_spelling_dispatch_rules() -> None:
    with pytest.raises(TypeError, match="give the queue URL once"):
        MessageQueueTrigger("local://q", queue="local://q")
    with pytest.raises(TypeError, match="needs the queue URL"):
        MessageQueueTrigger()
    with pytest.raises(ValueError, match="airflow_compat=False"):
        MessageQueueTrigger(queue=AWS, airflow_compat=False)
    # Herald's old flag is harmless in the Airflow spelling, and so is Airflow's triggerer routing.
    trigger = MessageQueueTrigger(queue=AWS, airflow_compat=True, trigger_queue="default")
    assert trigger.to_payload(sqs_message("x"))[1]["message_batch"][0]["Body"] == "x"
