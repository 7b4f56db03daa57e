"""`mqtt://USER:PASS@HOST:PORT/TOPIC?qos=1`: an MQTT subscription, through aiomqtt (paho-mqtt).

The topic is the URL's path and may hold wildcards: `mqtt://host:1883/sensors/#`
(a literal `#` is read as part of the topic, not as a URL fragment).

Options (query string, or keyword arguments of `MqttTrigger`):

- `qos` (default 1): 1 for at-least-once delivery, acknowledged after the
  commit; 0 is accepted (fire and forget: nothing to acknowledge, messages are
  lost while the watcher is down). QoS 2 is refused: its PUBREC tells the broker
  the client has the message before Herald committed it, and paho keeps no
  state across a restart, so a crash in between loses the message.
- `client_id` (default `herald-` + a hash of the host, port, user and topic):
  the persistent session's name. Stable, so a restarted watcher resumes its
  session and gets what was published meanwhile. Two triggerers running the same
  URL would take the session from each other: give each its own `client_id`.
- `clean_session` (default false): true drops the session on disconnect
  (nothing is kept while the watcher is down).
- `protocol` (default `5`): MQTT 5, which carries headers (user properties) and
  the message id Herald's dedupe needs; `3.1.1` for old brokers.
- `session_expiry` (MQTT 5, default never): seconds the broker keeps the
  session (and queues messages for it) while the watcher is disconnected.
- `receive_maximum` (MQTT 5, default 1000): unacknowledged messages the broker
  may send at once, so the largest batch.
- `dedupe` (default `message_id`): see below; `payload` is the other choice.

Delivery: QoS 1 with paho's manual acknowledgement: the PUBACK of a message is
sent by `ack`, after the triggerer's commit, in the order the messages came. A
message not acknowledged when the connection ends is sent again by the broker
when the session resumes, with the DUP flag set. aiomqtt does not expose manual
acknowledgement, so the trigger turns it on in the paho client aiomqtt wraps
(`Client._client.manual_ack_set(True)`) and acknowledges with `_client.ack`.

Dedupe key: MQTT gives a message no identity: the packet id is per session and
reused once acknowledged (every 65,535 messages at most), so topic + packet id
+ payload hash, the only thing a redelivery shares with the first delivery,
would also merge two identical readings (a sensor sending the same value)
whenever the broker happens to reuse the packet id: a message lost in normal
operation, not only after a crash. So:

- a message carrying a `message_id` user property (MQTT 5; Herald's publisher
  always sets a UUID) has the key `topic + message_id`: exact, a redelivery is
  deduplicated and identical readings stay distinct;
- a message without one gets a key unique to its delivery: never lost, but a
  crash between the commit and the PUBACK makes a redelivered copy (DUP set,
  `extra["message"]["redelivered"]` true) a second event: at least once;
- `dedupe=payload` keys messages without a `message_id` by topic + SHA-256 of
  the payload instead, for publishers whose payloads are unique by construction
  (identical payloads on one topic then make one event).

MQTT has no notion of lag: `lag()` is None.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit, urlunsplit

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from herald.triggers.base import (
    BaseEventTrigger,
    BrokerOptions,
    BrokerPublisher,
    Message,
    normalize_headers,
    parse_options,
)
from herald.triggers.urls import mask_url

DEFAULT_PORT = 1883
DEFAULT_RECEIVE_MAXIMUM = 1000
#: MQTT 5's "never expires"
SESSION_NEVER_EXPIRES = 0xFFFFFFFF
#: how long one `receive` waits for a first message before returning [] (a long poll)
WAIT_SECONDS = 20.0
#: the user property that carries a message's identity
MESSAGE_ID = "message_id"
DEDUPE_MODES = ("message_id", "payload")
PROTOCOLS = {"5": aiomqtt.ProtocolVersion.V5, "3.1.1": aiomqtt.ProtocolVersion.V311}


def _escape(url: str) -> str:
    # `#` is MQTT's multi-level wildcard, not a URL fragment, in an mqtt:// URL.
    return url.replace("#", "%23")


def _protocol(value: Any) -> str:
    text = str(value).strip().lower().removeprefix("v")
    text = {"311": "3.1.1", "4": "3.1.1", "5.0": "5"}.get(text, text)
    if text not in PROTOCOLS:
        raise ValueError(f"protocol={value!r}: expected 5 or 3.1.1")
    return text


@dataclass(frozen=True)
class MqttOptions(BrokerOptions):
    """The options of an MQTT trigger and publisher (URL query or keyword arguments).

    Attributes:
        qos: 1 (default) or 0 for a trigger; 0, 1 or 2 for the publisher.
        client_id: the session's client id (default: stable, derived from the URL).
        clean_session: drop the session on disconnect (default false).
        protocol: `5` (default) or `3.1.1`.
        session_expiry: MQTT 5 session expiry in seconds (default: never).
        receive_maximum: MQTT 5 unacknowledged messages in flight.
        dedupe: `message_id` (default) or `payload`; see the module's documentation.
    """

    qos: int = 1
    client_id: str | None = None
    clean_session: bool = False
    protocol: str = "5"
    session_expiry: int = SESSION_NEVER_EXPIRES
    receive_maximum: int = DEFAULT_RECEIVE_MAXIMUM
    dedupe: str = "message_id"

    BROKER: ClassVar[str] = "MQTT"


@dataclass(frozen=True)
class Endpoint:
    """The parts of an mqtt:// URL, its options parsed."""

    host: str
    port: int
    username: str | None
    password: str | None
    topic: str
    options: MqttOptions
    #: the URL with the connection applied and the options removed (`#` escaped)
    url: str
    common: dict[str, Any]

    @classmethod
    def parse(cls, url: str, options: dict[str, Any] | None = None) -> Endpoint:
        parsed = parse_options(MqttOptions, _escape(url), dict(options or {}))
        parts = urlsplit(parsed.url)
        if parts.scheme != "mqtt":
            raise ValueError(f"{mask_url(url)!r} is not an MQTT URL: expected mqtt://HOST:PORT/TOPIC")
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or DEFAULT_PORT,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            topic=unquote(parts.path[1:]),
            options=parsed.options,
            url=parsed.url,
            common=parsed.common,
        )


def default_client_id(url: str) -> str:
    """The client id a watcher of `url` uses unless told otherwise: stable across restarts.

    23 characters, the longest id every MQTT 3.1.1 broker must accept.
    """
    e = Endpoint.parse(url)
    seed = f"{e.host}:{e.port}|{e.username or ''}|{e.topic}"
    return "herald-" + hashlib.sha256(seed.encode()).hexdigest()[:16]


def _properties(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]


class _Client(aiomqtt.Client):
    """aiomqtt's client, keeping what it drops: paho's message (with its DUP flag) and the session flag."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inbox: asyncio.Queue[paho.MQTTMessage] = asyncio.Queue()
        self.session_present = False

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: Any,
        properties: Properties | None = None,
    ) -> None:
        self.session_present = bool(flags.session_present)
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self.inbox.put_nowait(message)

    @property
    def disconnected(self) -> asyncio.Future[None]:
        """Done when the connection ended (with the error, if it was lost)."""
        future: asyncio.Future[None] = self._disconnected
        return future

    def puback(self, mid: int, qos: int) -> None:
        """Send the PUBACK of message `mid` (manual acknowledgement is on)."""
        rc = self._client.ack(mid, qos)
        if rc != paho.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"MQTT acknowledgement of message {mid} failed: {paho.error_string(rc)}")


def _new_client(endpoint: Endpoint, protocol: str, client_id: str | None, clean: bool, **extra: Any) -> _Client:
    kwargs: dict[str, Any] = {
        "hostname": endpoint.host,
        "port": endpoint.port,
        "username": endpoint.username,
        "password": endpoint.password,
        "identifier": client_id,
        "protocol": PROTOCOLS[protocol],
        **extra,
    }
    if protocol == "5":
        kwargs["clean_start"] = clean
    else:
        kwargs["clean_session"] = clean
    return _Client(**kwargs)


class MqttTrigger(BaseEventTrigger):
    """Subscribes to an MQTT topic with a persistent session; PUBACK after the commit.

    Args:
        url: `mqtt://USER:PASS@HOST:PORT/TOPIC`, optionally with the options below
            in its query string.
        qos: 1 (default) or 0.
        client_id: the session's client id (default: stable, derived from the URL).
        clean_session: drop the session on disconnect (default false).
        protocol: `5` (default) or `3.1.1`.
        session_expiry: MQTT 5 session expiry in seconds (default: never).
        receive_maximum: MQTT 5 unacknowledged messages in flight (default 1000).
        dedupe: `message_id` (default) or `payload`; see the module's documentation.
        **options: `apply_function`, `filter`, `max_payload_bytes`.
    """

    scheme = "mqtt"

    def __init__(self, url: str, **options: Any) -> None:
        self.endpoint = Endpoint.parse(url, options)
        super().__init__(**self.endpoint.common)
        o = self.endpoint.options
        self.options = o
        self.url = self.endpoint.url
        self.topic = self.endpoint.topic
        if not self.topic:
            raise ValueError(f"{mask_url(url)!r} names no topic: mqtt://HOST:PORT/TOPIC")
        self.qos = o.qos
        if self.qos not in (0, 1):
            raise ValueError(
                f"qos={self.qos}: Herald subscribes with QoS 0 or 1; QoS 2 acknowledges receipt "
                "(PUBREC) before the commit, so a crash would lose the message"
            )
        self.client_id = o.client_id or default_client_id(self.url)
        self.clean_session = o.clean_session
        self.protocol = _protocol(o.protocol)
        self.session_expiry = o.session_expiry
        self.receive_maximum = o.receive_maximum
        if not 1 <= self.receive_maximum <= 65535:
            raise ValueError(f"receive_maximum must be between 1 and 65535, got {self.receive_maximum}")
        self.dedupe = o.dedupe
        if self.dedupe not in DEDUPE_MODES:
            raise ValueError(f"dedupe={self.dedupe!r}: expected one of {', '.join(DEDUPE_MODES)}")
        self._client: _Client | None = None
        self._sequence = 0

    # -- the broker side ---------------------------------------------------------------

    async def open(self) -> None:
        await self.close()
        extra: dict[str, Any] = {}
        if self.protocol == "5":
            connect = _properties(PacketTypes.CONNECT)
            connect.SessionExpiryInterval = 0 if self.clean_session else self.session_expiry
            connect.ReceiveMaximum = self.receive_maximum
            extra["properties"] = connect
        client = _new_client(self.endpoint, self.protocol, self.client_id, self.clean_session, **extra)
        # Acknowledge only when `ack` says so, after the commit (paho's default is on receipt).
        client._client.manual_ack_set(True)
        await client.__aenter__()
        try:
            if not client.session_present:
                # A resumed session still holds the subscription; subscribing again
                # would make the broker resend the topic's retained message.
                options = SubscribeOptions(qos=self.qos, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
                if self.protocol == "5":
                    granted = await client.subscribe(self.topic, options=options)
                else:
                    granted = await client.subscribe(self.topic, qos=self.qos)
                first: Any = granted[0]
                code = int(getattr(first, "value", first))
                if code >= 0x80:
                    raise ConnectionError(f"the broker refused the subscription to {self.topic!r} (reason code {code})")
                if code < self.qos:
                    raise ConnectionError(
                        f"the broker granted QoS {code} for {self.topic!r}, below the QoS {self.qos} asked for: "
                        "messages would not be acknowledged after the commit"
                    )
        except BaseException:
            await _disconnect(client)
            raise
        self._client = client
        self._sequence = 0

    async def receive(self, max_messages: int) -> list[Message]:
        client = self._client
        if client is None:
            raise ConnectionError("the MQTT trigger is not open")
        if client.inbox.empty():
            getting = asyncio.ensure_future(client.inbox.get())
            waiting: set[asyncio.Future[Any]] = {getting, client.disconnected}
            done, _ = await asyncio.wait(waiting, timeout=WAIT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            if getting not in done:
                getting.cancel()
                if client.disconnected.done():
                    error = None if client.disconnected.cancelled() else client.disconnected.exception()
                    raise ConnectionError(f"MQTT connection for topic {self.topic!r} lost: {error}") from error
                return []
            first = [getting.result()]
        else:
            first = []
        # Take what has already arrived, without waiting for more.
        received = first
        while len(received) < max_messages and not client.inbox.empty():
            received.append(client.inbox.get_nowait())
        return [self._message(client, m) for m in received]

    def _message(self, client: _Client, delivery: paho.MQTTMessage) -> Message:
        self._sequence += 1
        user_properties = getattr(delivery.properties, "UserProperty", None) or []
        headers = normalize_headers(user_properties)
        message_id = headers.pop(MESSAGE_ID, None)
        topic = delivery.topic
        metadata: dict[str, Any] = {
            "broker": "mqtt",
            "topic": topic,
            "subscription": self.topic,
            "qos": delivery.qos,
            "retain": bool(delivery.retain),
            "redelivered": bool(delivery.dup),
            "packet_id": delivery.mid,
        }
        if message_id:
            metadata["message_id"] = message_id
            dedupe_key = f"{topic}|{message_id}"
        elif self.dedupe == "payload":
            dedupe_key = f"{topic}|sha256:{hashlib.sha256(delivery.payload).hexdigest()}"
        else:
            dedupe_key = f"{topic}|delivery:{uuid.uuid4().hex}"
        return Message(
            body=bytes(delivery.payload),
            dedupe_key=dedupe_key,
            headers=headers,
            metadata=metadata,
            handle=_Handle(client, self._sequence, delivery.mid, delivery.qos),
        )

    async def ack(self, messages: list[Message]) -> None:
        client = self._client
        if client is None:
            return
        # MQTT wants PUBACKs in the order the messages came.
        for handle in sorted((m.handle for m in messages), key=lambda h: h.sequence):
            # A message from an earlier connection is resent by the broker on this
            # one (a packet id means nothing outside its connection): skip it.
            if handle.client is client and handle.qos > 0:
                client.puback(handle.mid, handle.qos)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _disconnect(client)

    def describe(self) -> dict[str, Any]:
        return {
            "url": mask_url(self.url).replace("%23", "#"),
            "broker": "mqtt",
            "topic": self.topic,
            "qos": self.qos,
            "client_id": self.client_id,
            "clean_session": self.clean_session,
            "protocol": self.protocol,
            "dedupe": self.dedupe,
        }


@dataclass(frozen=True)
class _Handle:
    """What `ack` needs: the connection, the order of receipt, the packet id and QoS."""

    client: _Client
    sequence: int
    mid: int
    qos: int


async def _disconnect(client: _Client) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.__aexit__(None, None, None), 10)
    if client.disconnected.done() and not client.disconnected.cancelled():
        client.disconnected.exception()  # retrieved, so asyncio does not log it as never retrieved


# -- publishing ------------------------------------------------------------------------


def _broker_key(url: str, protocol: str) -> str:
    parts = urlsplit(_escape(url))
    return urlunsplit((parts.scheme, parts.netloc, "", f"protocol={protocol}", ""))


class MqttPublisher(BrokerPublisher):
    """Publishes on one connection per broker (host, port, user, protocol) and waits for the PUBACK (QoS 1).

    With MQTT 5 (the default) headers travel as user properties, with a UUID
    `message_id` property that watchers use as the dedupe key. MQTT 3.1.1 has no
    headers: passing some raises rather than dropping them.
    """

    options_class = MqttOptions

    @classmethod
    def pool_key(cls, url: str) -> str:
        endpoint = Endpoint.parse(url)
        return _broker_key(endpoint.url, _protocol(endpoint.options.protocol))

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._client: _Client | None = None

    @property
    def is_open(self) -> bool:
        return self._client is not None and not self._client.disconnected.done()

    async def open(self) -> None:
        endpoint = Endpoint.parse(self.url)
        protocol = _protocol(endpoint.options.protocol)
        client = _new_client(endpoint, protocol, f"herald-pub-{uuid.uuid4().hex[:12]}", True)
        await client.__aenter__()
        self._client = client

    async def publish(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        endpoint = Endpoint.parse(url)
        topic = endpoint.topic
        if not topic or "#" in topic or "+" in topic:
            raise ValueError(f"publish needs a topic without wildcards, got {topic!r} in {mask_url(url)!r}")
        qos = endpoint.options.qos
        if qos not in (0, 1, 2):
            raise ValueError(f"qos={qos}: expected 0, 1 or 2")
        properties: Properties | None = None
        if _protocol(endpoint.options.protocol) == "5":
            properties = _properties(PacketTypes.PUBLISH)
            properties.UserProperty = [*headers.items(), (MESSAGE_ID, uuid.uuid4().hex)]
        elif headers:
            raise ValueError("MQTT 3.1.1 carries no headers; use protocol=5 to send them")
        assert self._client is not None
        await self._client.publish(topic, body, qos=qos, properties=properties)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _disconnect(client)
