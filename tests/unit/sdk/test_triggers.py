"""Messages to payloads: decoding, apply_function, filters, size limits; URLs and the registry."""

from __future__ import annotations

import json
import os

import pytest

from herald import MessageQueueTrigger
from herald.triggers.base import Message, decode_body
from herald.triggers.local import LocalQueueTrigger
from herald.triggers.registry import UnknownSchemeError, scheme_of
from herald.triggers.urls import mask_url, with_connection


def msg(body: bytes) -> Message:
    return Message(body=body, dedupe_key="k")


def test_bodies_decode_to_json_text_or_base64() -> None:
    assert decode_body(b'{"a": 1}') == ({"a": 1}, None)
    assert decode_body(b"42") == (42, None)
    assert decode_body(b"hello") == ("hello", None)
    assert decode_body(b"\xff\x00") == ("/wA=", "base64")


def test_apply_function_can_skip_and_must_return_json() -> None:
    trigger = MessageQueueTrigger("local://q", apply_function=lambda m: None if m.value() == b"x" else {"v": m.text()})
    assert trigger.to_payload(msg(b"x")) == (False, None, None)
    assert trigger.to_payload(msg(b"y")) == (True, {"v": "y"}, None)
    bad = MessageQueueTrigger("local://q", apply_function=lambda m: object())
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        bad.to_payload(msg(b"y"))


def test_airflow_style_apply_function_reads_message_value() -> None:
    def apply_function(*args: object, **kwargs: object) -> object:
        message = args[-1]
        return json.loads(message.value())  # type: ignore[attr-defined]

    trigger = MessageQueueTrigger("local://q", apply_function=apply_function)
    assert trigger.to_payload(msg(b'{"id": 3}')) == (True, {"id": 3}, None)


def test_dotted_apply_function_is_resolved_when_the_trigger_is_made() -> None:
    trigger = MessageQueueTrigger("local://q", apply_function="json.loads")
    assert trigger.apply_function is json.loads  # resolved now, while the DAG file loads
    with pytest.raises(TypeError):  # json.loads(Message)
        trigger.to_payload(msg(b"{}"))
    with pytest.raises(ImportError, match="cannot import module 'no_such_module_x'"):
        MessageQueueTrigger("local://q", apply_function="no_such_module_x.fn")


def test_filter_is_a_jmespath_condition_on_the_payload() -> None:
    trigger = MessageQueueTrigger("local://q", filter="temp > `30`")
    assert trigger.to_payload(msg(b'{"temp": 31}'))[0] is True
    assert trigger.to_payload(msg(b'{"temp": 3}'))[0] is False
    with pytest.raises(ValueError, match="invalid filter"):
        MessageQueueTrigger("local://q", filter="temp >")


def test_oversized_body_is_refused() -> None:
    trigger = MessageQueueTrigger("local://q", max_payload_bytes=4)
    with pytest.raises(ValueError, match="over the limit of 4"):
        trigger.to_payload(msg(b"12345"))


def test_message_queue_trigger_picks_the_class_from_the_scheme() -> None:
    trigger = MessageQueueTrigger(queue="local://orders")
    assert isinstance(trigger, LocalQueueTrigger) and trigger.queue == "orders"
    assert trigger.describe()["url"] == "local://orders"
    with pytest.raises(UnknownSchemeError, match="no trigger for scheme 'ftp'"):
        scheme_of("ftp://x/y")
    with pytest.raises(UnknownSchemeError, match="not a queue URL"):
        scheme_of("orders")


def test_passwords_are_masked_and_connections_fill_host_and_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    assert mask_url("amqp://guest:secret@127.0.0.1:5672/%2F?queue=q") == "amqp://guest:***@127.0.0.1:5672/%2F?queue=q"
    assert mask_url("local://q") == "local://q"
    monkeypatch.setenv("HERALD_CONN_MY_RABBIT", "amqp://u:p@10.0.0.1:5672?prefetch=10")
    merged = with_connection("amqp:///%2F?queue=orders", "my_rabbit")
    assert merged.startswith("amqp://u:p@10.0.0.1:5672/%2F?")
    assert "prefetch=10" in merged and "queue=orders" in merged
    with pytest.raises(ValueError, match="HERALD_CONN_NOPE"):
        with_connection("amqp:///x", "nope")
    assert "HERALD_CONN_NOPE" not in os.environ
