"""The registry: which trigger and publisher serve a URL scheme, plugins, and the extra a scheme needs."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest

from herald import MessageQueueTrigger
from herald.sdk.triggers import BaseEventTrigger, Message, Publisher
from herald.triggers import registry
from herald.triggers.registry import UnknownSchemeError, publisher_class, scheme_of, trigger_class


class EchoPublisher(Publisher):
    """A plugin's publisher (never connects)."""

    async def open(self) -> None: ...

    async def publish(self, url: str, body: bytes, headers: dict[str, str]) -> None: ...

    async def close(self) -> None: ...


class EchoTrigger(BaseEventTrigger):
    """A third-party trigger, registered under `echo://` through the `herald.triggers` entry points."""

    scheme = "echo"
    publisher_class = EchoPublisher

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(**options)
        self.url = url

    async def open(self) -> None: ...

    async def receive(self, max_messages: int) -> list[Message]:
        return []

    async def ack(self, messages: list[Message]) -> None: ...

    def describe(self) -> dict[str, Any]:
        return {"url": self.url}


class SilentTrigger(EchoTrigger):
    """A plugin without a publisher."""

    scheme = "silent"
    publisher_class = None  # type: ignore[assignment]


def plugins(monkeypatch: pytest.MonkeyPatch, *names: tuple[str, str]) -> None:
    found = [EntryPoint(name, f"{__name__}:{attr}", "herald.triggers") for name, attr in names]
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep for ep in found if ep.group == group])


def test_every_builtin_scheme_resolves_and_aws_queue_urls_mean_sqs() -> None:
    assert scheme_of("kafka://127.0.0.1:9092/t") == "kafka"
    assert scheme_of("AMQP://guest:guest@127.0.0.1/%2F?queue=q") == "amqp"
    assert scheme_of("https://sqs.eu-west-1.amazonaws.com/123456789012/orders") == "sqs"
    with pytest.raises(UnknownSchemeError, match="no trigger for scheme 'https'"):
        scheme_of("https://example.com/orders")  # only AWS's SQS hosts are queue URLs over https
    for scheme, (_module, cls_name, _publisher, _extra) in registry.BUILTIN.items():
        assert trigger_class(scheme).__name__ == cls_name
        assert issubclass(publisher_class(scheme), Publisher)


def test_an_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(UnknownSchemeError) as raised:
        scheme_of("ftp://host/q")
    assert "known: amqp, amqps, kafka, kinesis, kinesis+http, kinesis+https, local, mqtt" in str(raised.value)


def test_a_plugin_serves_its_scheme_through_message_queue_trigger(monkeypatch: pytest.MonkeyPatch) -> None:
    plugins(monkeypatch, ("echo", "EchoTrigger"))
    assert scheme_of("echo://anywhere/q") == "echo"
    assert trigger_class("echo") is EchoTrigger and publisher_class("echo") is EchoPublisher
    trigger = MessageQueueTrigger("echo://anywhere/q", filter="ok")
    assert isinstance(trigger, EchoTrigger) and trigger.describe() == {"url": "echo://anywhere/q"}


def test_a_plugin_without_a_publisher_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    plugins(monkeypatch, ("silent", "SilentTrigger"))
    with pytest.raises(UnknownSchemeError, match="silent:// trigger SilentTrigger has no publisher_class"):
        publisher_class("silent")


@pytest.mark.parametrize("claims", [[("echo", "EchoTrigger"), ("echo", "SilentTrigger")], [("kafka", "EchoTrigger")]])
def test_two_triggers_claiming_one_scheme_is_an_error_not_a_choice(
    monkeypatch: pytest.MonkeyPatch, claims: list[tuple[str, str]]
) -> None:
    plugins(monkeypatch, *claims)
    with pytest.raises(RuntimeError, match=f"two triggers claim the URL scheme '{claims[-1][0]}'"):
        scheme_of("ftp://host/q")


def test_a_missing_client_library_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.BUILTIN, "nolib", ("herald_no_such_module", "NoTrigger", "NoPublisher", "nolib"))
    with pytest.raises(ImportError, match=r"pip install 'herald\[nolib\]'"):
        trigger_class("nolib")
    with pytest.raises(ImportError, match=r"nolib:// needs a client library that is not installed"):
        publisher_class("nolib")


def test_a_queue_url_copied_from_boto3_gets_a_hint_to_name_the_broker() -> None:
    with pytest.raises(UnknownSchemeError) as raised:
        MessageQueueTrigger("http://127.0.0.1:5055/000000000000/q")
    assert (
        raised.value.hint == "an SQS queue URL (as boto3 prints it) is written sqs+http://127.0.0.1:5055/000000000000/q"
    )
    assert raised.value.hint in str(raised.value)  # a DAG file's import error shows it too
    with pytest.raises(UnknownSchemeError) as other:
        scheme_of("https://example.com/orders")
    assert other.value.hint is not None and "sqs+https://" in other.value.hint
    with pytest.raises(UnknownSchemeError) as unrelated:
        scheme_of("ftp://host/q")
    assert unrelated.value.hint is None
