"""The delivery contract and MQTT's own guarantees, against Mosquitto on 127.0.0.1:1883."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import aiomqtt
import pytest

from herald.publishing import aclose_publishers, apublish
from herald.triggers import mqtt
from herald.triggers.base import BaseEventTrigger, Message
from herald.triggers.mqtt import MqttTrigger
from tests.conftest import require_service
from tests.integration.contract import BrokerCase, ContractSuite, run
from tests.integration.harness import TriggererHarness

BROKER = "mqtt://127.0.0.1:1883"


async def end_session(client_id: str) -> None:
    """Make Mosquitto forget the persistent session `client_id` (clean start, expiry 0)."""
    client = aiomqtt.Client(
        "127.0.0.1", 1883, identifier=client_id, protocol=aiomqtt.ProtocolVersion.V5, clean_start=True
    )
    async with client:
        pass


class MqttCase(BrokerCase):
    broker: ClassVar[str] = "mqtt"

    #: why the contract's broker restart test does not apply
    no_restart: ClassVar[str] = (
        "the machine's one Mosquitto serves every test; the broker dropping the session is the reconnect test"
    )

    def require(self) -> None:
        require_service("Mosquitto", "127.0.0.1", 1883)

    async def kill_connection(self, trigger: BaseEventTrigger, during: Callable[[], Awaitable[None]]) -> None:
        # A client taking over the session's client id makes Mosquitto disconnect the
        # watcher (as a broker restart would). It acknowledges nothing, so whatever is
        # published meanwhile stays in the session for the watcher to resume.
        assert isinstance(trigger, MqttTrigger)
        thief = aiomqtt.Client(
            "127.0.0.1", 1883, identifier=trigger.client_id, protocol=aiomqtt.ProtocolVersion.V5, clean_start=False
        )
        thief._client.manual_ack_set(True)
        session = mqtt._properties(mqtt.PacketTypes.CONNECT)
        session.SessionExpiryInterval = mqtt.SESSION_NEVER_EXPIRES
        thief._properties = session
        async with thief:
            await during()

    def url(self, name: str) -> str:
        return f"{BROKER}/herald-test/{name}"

    async def prepare(self, url: str) -> None:
        # MQTT drops what is published to a topic nobody subscribes to: opening the
        # trigger once creates its persistent session, which keeps messages from now on.
        trigger = MqttTrigger(url)
        await trigger.open()
        await trigger.close()

    async def cleanup(self, url: str) -> None:
        await aclose_publishers()
        await end_session(MqttTrigger(url).client_id)


class TestMqttContract(ContractSuite):
    case = MqttCase()


# -- MQTT's own guarantees ---------------------------------------------------------------


@pytest.fixture
def url() -> str:
    MqttCase().require()
    return MqttCase().url(f"herald-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def harness(tmp_path: Any) -> Any:
    MqttCase().require()
    h = TriggererHarness(f"sqlite:///{tmp_path}/herald.db")
    yield h
    h.close()


async def receive_until(trigger: MqttTrigger, count: int) -> list[Message]:
    """Receive until `count` messages came (a receive returns what has arrived so far)."""
    got: list[Message] = []
    while len(got) < count:
        got += await asyncio.wait_for(trigger.receive(500), 30)
    return got


def test_unacknowledged_message_comes_back_flagged_with_the_same_key(url: str) -> None:
    async def scenario() -> None:
        trigger = MqttTrigger(url)
        await trigger.open()
        await apublish(url, b"21.5", {"unit": "C"})
        (first,) = await receive_until(trigger, 1)
        await trigger.close()  # no PUBACK: the session keeps it in flight
        await trigger.open()
        (again,) = await receive_until(trigger, 1)
        await trigger.ack([again])
        await trigger.close()
        await trigger.open()
        nothing = await trigger.receive(500) if not trigger._client or not trigger._client.inbox.empty() else []
        await trigger.close()
        await MqttCase().cleanup(url)
        assert first.metadata["redelivered"] is False
        assert again.metadata["redelivered"] is True
        assert again.body == b"21.5" and again.headers == {"unit": "C"}
        assert again.dedupe_key == first.dedupe_key == f"{trigger.topic}|{first.metadata['message_id']}"
        assert nothing == []

    run(scenario)


def test_messages_published_while_the_watcher_is_away_are_delivered_on_return(url: str) -> None:
    async def scenario() -> None:
        trigger = MqttTrigger(url)
        await trigger.open()
        await trigger.close()
        for n in range(3):
            await apublish(url, str(n).encode())
        await trigger.open()
        got = await receive_until(trigger, 3)
        await trigger.ack(got)
        await trigger.close()
        await MqttCase().cleanup(url)
        assert [m.body for m in got] == [b"0", b"1", b"2"]

    run(scenario)


def test_ack_acknowledges_only_the_messages_given(url: str) -> None:
    async def scenario() -> None:
        trigger = MqttTrigger(url)
        await trigger.open()
        for n in range(3):
            await apublish(url, str(n).encode())
        got = await receive_until(trigger, 3)
        await trigger.ack([got[0], got[2]])
        await trigger.close()
        await trigger.open()
        again = await receive_until(trigger, 1)
        await trigger.ack(again)
        await trigger.close()
        await MqttCase().cleanup(url)
        assert [m.body for m in again] == [b"1"]
        assert again[0].metadata["redelivered"] is True

    run(scenario)


def test_identical_readings_are_two_events(harness: TriggererHarness, url: str) -> None:
    async def scenario() -> None:
        await MqttCase().prepare(url)
        await harness.start(("readings", MqttTrigger(url)))
        await apublish(url, b'{"temp": 20}')
        await apublish(url, b'{"temp": 20}')
        await harness.wait_events(2, timeout=30)
        await harness.wait_received(2)
        await harness.stop()
        await MqttCase().cleanup(url)
        assert [e["payload"] for e in harness.events()] == [{"temp": 20}, {"temp": 20}]

    run(scenario)


def test_wildcard_subscription_records_the_topic_of_each_message(harness: TriggererHarness, url: str) -> None:
    watched = f"{url}/#?qos=1"

    async def scenario() -> None:
        await MqttCase().prepare(watched)
        await harness.start(("sensors", MqttTrigger(watched)))
        await apublish(f"{url}/kitchen", b"1")
        await apublish(f"{url}/garage/door", b"2")
        events = await harness.wait_events(2, timeout=30)
        await harness.stop()
        await MqttCase().cleanup(watched)
        base = MqttTrigger(url).topic
        assert {e["message"]["topic"]: e["payload"] for e in events} == {f"{base}/kitchen": 1, f"{base}/garage/door": 2}
        assert all(e["message"]["subscription"] == f"{base}/#" for e in events)

    run(scenario)


def test_mqtt_3_1_1_session_without_headers(url: str) -> None:
    old = f"{url}?protocol=3.1.1"

    async def scenario() -> None:
        trigger = MqttTrigger(old)
        await trigger.open()
        await trigger.close()
        await apublish(old, b"same")
        await apublish(old, b"same")
        with pytest.raises(ValueError, match="no headers"):
            await apublish(old, b"x", {"h": "v"})
        await trigger.open()
        got = await receive_until(trigger, 2)
        await trigger.ack(got)
        await trigger.close()
        hashing = MqttTrigger(f"{old}&dedupe=payload")
        by_payload = [hashing._message(got[0].handle.client, _paho(b"same")) for _ in range(2)]
        await aclose_publishers()
        await end_session(trigger.client_id)
        assert [m.body for m in got] == [b"same", b"same"]
        assert got[0].dedupe_key != got[1].dedupe_key  # no message id: one key per delivery
        assert got[0].headers == {} and "message_id" not in got[0].metadata
        assert by_payload[0].dedupe_key == by_payload[1].dedupe_key
        assert by_payload[0].dedupe_key.startswith("t|sha256:")

    run(scenario)


def _paho(payload: bytes) -> Any:
    message = mqtt.paho.MQTTMessage(mid=1, topic=MqttTrigger(f"{BROKER}/t").topic.encode())
    message.payload = payload
    message.qos = 1
    return message


def test_options_are_checked_and_secrets_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="QoS 2"):
        MqttTrigger(f"{BROKER}/t?qos=2")
    with pytest.raises(ValueError, match="names no topic"):
        MqttTrigger(BROKER)
    monkeypatch.setenv("HERALD_CONN_IOT", "mqtt://device:s3cret@broker.example:8883?qos=1")
    trigger = MqttTrigger.from_url("mqtt://_/plant/+/temp/#", conn_id="iot")
    assert trigger.topic == "plant/+/temp/#"
    assert (trigger.endpoint.host, trigger.endpoint.port, trigger.endpoint.password) == (
        "broker.example",
        8883,
        "s3cret",
    )
    assert trigger.client_id == mqtt.default_client_id(trigger.url) and len(trigger.client_id) == 23
    assert "s3cret" not in json.dumps(trigger.describe())

    async def wildcard() -> None:
        with pytest.raises(ValueError, match="without wildcards"):
            await apublish(f"{BROKER}/a/#", b"x")

    run(wildcard)
