"""`sqs://HOST[:PORT]/ACCOUNT/QUEUE`: Amazon SQS queues, and local servers such as moto.

URLs:

- `sqs://sqs.eu-west-1.amazonaws.com/123456789012/orders` (HTTPS; the region
  is read from an AWS host name), `sqs+https://...` the same;
- `sqs+http://127.0.0.1:5005/123456789012/orders?region=us-east-1` for a
  local server;
- `https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE`, the queue URL as AWS shows
  it and as Airflow's `MessageQueueTrigger(queue=...)` takes it.

Credentials come from the URL's user and password (best from a connection:
`conn_id="aws_default"` reads `HERALD_CONN_AWS_DEFAULT`, or `?conn_id=` in the
URL), else from botocore's usual chain (`AWS_ACCESS_KEY_ID`... variables,
`~/.aws`, instance roles). The region comes from `?region=`, else from an AWS
host name, else from botocore's configuration, else `us-east-1`.

Delivery: several long polls of up to 20 s in flight at once (`receives`,
default 4), each returning as soon as a message is there with up to 10; they
keep receiving while the triggerer commits what came before, up to `batches`
receives' worth of messages held and not yet acknowledged. Each committed
batch is deleted with `DeleteMessageBatch` calls (10 a call, all at once) only
after the triggerer committed it. While messages wait or are being committed
their visibility is extended in the background, so a slow commit does not let
another consumer receive them; `close()` makes unacknowledged messages visible
again at once. The dedupe key is the queue name and the `MessageId`, which SQS
keeps across redeliveries (a message two receives in flight both got becomes
one event, and both copies are deleted).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from herald.triggers.base import BaseEventTrigger, BrokerOptions, BrokerPublisher, Message, parse_options
from herald.triggers.urls import mask_url, query_options

log = logging.getLogger("herald.triggers.sqs")

#: SQS limits: a long poll waits at most 20 s, a receive or a batch call takes at most 10
MAX_WAIT_SECONDS = 20
MAX_BATCH = 10
#: ReceiveMessage calls a watcher keeps in flight at once: one call returns at most
#: 10 messages and takes a round trip (more on a loaded server), so a backlog
#: drains only as fast as several calls overlap
DEFAULT_RECEIVES = 4
#: with `wait_time_seconds=0` (short polls), an empty queue is asked again after this
EMPTY_SHORT_POLL_PAUSE = 1.0
DEFAULT_REGION = "us-east-1"
# Few retries inside one call: the triggerer retries forever with its own
# back-off, and shows the error in `herald watchers list` meanwhile.
_TRIGGER_CONFIG = AioConfig(retries={"mode": "standard", "max_attempts": 3})
#: message attribute marking a body that Herald's publisher sent as base64 (SQS
#: bodies must be text, and only some characters are allowed in them)
ENCODING_ATTRIBUTE = "herald-encoding"

# The queue URL as AWS shows it: https://sqs.REGION.amazonaws.com[.cn]/ACCOUNT/QUEUE
_AWS_HOST = re.compile(r"^sqs[.-](?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$")
# Characters SQS accepts in a message body.
_SQS_TEXT = re.compile("^[\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*$")

_SCHEMES = {"sqs": "https", "sqs+https": "https", "sqs+http": "http"}


@dataclass(frozen=True)
class SqsOptions(BrokerOptions):
    """The options of an SQS trigger and publisher (URL query or keyword arguments).

    Attributes:
        region: the AWS region (Airflow's `region_name`).
        wait_time_seconds: how long one long poll waits for a message (0-20).
        max_messages: messages per ReceiveMessage call (1-10; larger is capped at 10).
        batches: ReceiveMessage calls' worth of messages a watcher holds at once, received
            and not yet acknowledged (what one receive may hand the triggerer).
        receives: ReceiveMessage calls in flight at once (long polls that overlap).
        visibility_timeout: seconds a received message stays hidden (default: the queue's).
        airflow_compat: give Airflow's `{"message_batch": [...]}` payload.
        message_group_id: the publisher's message group on a FIFO queue.
    """

    region: str | None = None
    wait_time_seconds: int = 20
    max_messages: int = 10
    batches: int = 5
    receives: int = DEFAULT_RECEIVES
    visibility_timeout: int | None = None
    airflow_compat: bool = False
    message_group_id: str | None = None

    BROKER: ClassVar[str] = "SQS"
    ALIASES: ClassVar[dict[str, str]] = {"region_name": "region", "aws_conn_id": "conn_id"}


@dataclass(frozen=True)
class SqsAddress:
    """Where a queue is and how to reach it, parsed from an `sqs://` URL."""

    endpoint_url: str
    account: str
    queue: str
    region: str | None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)

    @property
    def queue_url(self) -> str:
        """The queue URL SQS knows (no credentials)."""
        return f"{self.endpoint_url}/{self.account}/{self.queue}"

    @property
    def fifo(self) -> bool:
        """FIFO queues are named `*.fifo`."""
        return self.queue.endswith(".fifo")

    def client_kwargs(self) -> dict[str, Any]:
        """Arguments of `create_client("sqs", ...)`."""
        kwargs: dict[str, Any] = {"endpoint_url": self.endpoint_url, "region_name": self.region or _default_region()}
        if self.access_key is not None:
            kwargs["aws_access_key_id"] = self.access_key
            kwargs["aws_secret_access_key"] = self.secret_key or ""
        return kwargs

    def connection_key(self) -> str:
        """What identifies one client: endpoint, region and credentials."""
        return "\x00".join((self.endpoint_url, self.region or "", self.access_key or "", self.secret_key or ""))


def _default_region() -> str:
    # botocore's own configuration (AWS_DEFAULT_REGION, ~/.aws/config) when set.
    region: str | None = get_session().get_config_variable("region")
    return region or DEFAULT_REGION


def from_aws_url(url: str) -> str:
    """`https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE` as `sqs://...?region=REGION`; other URLs unchanged."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        return url
    match = _AWS_HOST.match((parts.hostname or "").lower())
    if match is None:
        raise ValueError(
            f"{mask_url(url)!r} is not an SQS queue URL: expected https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE"
        )
    query = {"region": match["region"], **query_options(url)}
    return urlunsplit(("sqs", parts.netloc, parts.path, urlencode(query), ""))


def parse_url(url: str) -> SqsAddress:
    """The address of the queue at `url` (`sqs://`, `sqs+http://`, `sqs+https://`, or AWS's https form)."""
    url = from_aws_url(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(f"{mask_url(url)!r} is not an SQS URL: expected sqs://HOST[:PORT]/ACCOUNT/QUEUE")
    segments = [s for s in parts.path.split("/") if s]
    if not parts.hostname or parts.hostname == "_" or len(segments) != 2:
        raise ValueError(
            f"{mask_url(url)!r} is not an SQS queue URL: expected {scheme}://HOST[:PORT]/ACCOUNT/QUEUE "
            "(with conn_id=..., the connection gives the host)"
        )
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if ":" in parts.hostname:  # IPv6
        host = f"[{parts.hostname}]" if parts.port is None else f"[{parts.hostname}]:{parts.port}"
    region = query_options(url).get("region") or None
    if region is None:
        match = _AWS_HOST.match(parts.hostname.lower())
        region = match["region"] if match else None
    return SqsAddress(
        endpoint_url=f"{_SCHEMES[scheme]}://{host}",
        account=segments[0],
        queue=segments[1],
        region=region,
        access_key=unquote(parts.username) if parts.username else None,
        secret_key=unquote(parts.password) if parts.password is not None else None,
    )


def _as_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if number < low or (high is not None and number > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bounds}, got {number}")
    return number


def encode_body(body: bytes) -> tuple[str, bool]:
    """The body as SQS text, and whether it had to be sent as base64."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), True
    if _SQS_TEXT.match(text):
        return text, False
    return base64.b64encode(body).decode("ascii"), True


def _attribute_text(value: dict[str, Any]) -> str:
    if "StringValue" in value:
        return str(value["StringValue"])
    binary = value.get("BinaryValue", b"")
    return base64.b64encode(binary).decode("ascii") if isinstance(binary, bytes) else str(binary)


@dataclass
class _Receipt:
    """`Message.handle` of an SQS message: what `ack` and Airflow's payload shape need."""

    receipt_handle: str
    raw: dict[str, Any]


def airflow_message_batch(message: Message) -> dict[str, Any]:
    """The payload Airflow's SQS trigger gives: `{"message_batch": [<the SQS message>]}`.

    Herald makes one event per message, so the batch always holds one message;
    `event.extra["payload"]["message_batch"][0]["Body"]` is its body, as text.
    """
    raw: dict[str, Any] = message.handle.raw if isinstance(message.handle, _Receipt) else {}
    body = raw.get("Body")
    if body is None:
        body = message.body.decode("utf-8", errors="replace")
    attributes = {
        name: {k: (base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v) for k, v in value.items()}
        for name, value in raw.get("MessageAttributes", {}).items()
    }
    entry = {
        "MessageId": message.metadata.get("message_id"),
        "MD5OfBody": raw.get("MD5OfBody") or hashlib.md5(str(body).encode("utf-8")).hexdigest(),
        "Body": body,
        "Attributes": dict(raw.get("Attributes", {})),
        "MessageAttributes": attributes,
    }
    return {"message_batch": [entry]}


class SqsTrigger(BaseEventTrigger):
    """Consumes an Amazon SQS queue (standard or FIFO).

    Args:
        url: the queue URL, `sqs://HOST[:PORT]/ACCOUNT/QUEUE` or `sqs+http://...`,
            with credentials as user and password if not from the environment.
        region: the AWS region (default: from `?region=`, an AWS host name,
            botocore's configuration, else `us-east-1`).
        wait_time_seconds: how long one long poll waits for a message (0-20, default 20).
        max_messages: messages per ReceiveMessage call (1-10, default 10; larger is capped at 10).
        batches: how many ReceiveMessage calls' worth of messages (`batches * max_messages`)
            the watcher holds at once, received and not yet acknowledged (default 5);
            one receive hands the triggerer what is there, up to that.
        receives: ReceiveMessage calls kept in flight at once (1-20, default 4): they
            go on receiving while the triggerer commits, so a backlog drains several
            calls at a time.
        visibility_timeout: seconds a received message stays hidden from other
            consumers (default: the queue's own setting).
        airflow_compat: make the payload the shape Airflow's SQS trigger gives,
            `{"message_batch": [{"Body": ..., "MessageId": ...}]}`, so that a DAG
            written for Airflow reads `payload["message_batch"][0]["Body"]` unchanged.
        conn_id: the connection the URL was resolved with (shown in `describe()`).
    """

    scheme = "sqs"
    #: competing consumers: a received message is invisible to the others until it is deleted
    shareable = True

    def __init__(self, url: str, **options: Any) -> None:
        parsed = parse_options(SqsOptions, from_aws_url(url), options)
        o = parsed.options
        apply_function = parsed.common.pop("apply_function", None)
        if o.airflow_compat and apply_function is not None:
            raise ValueError("give either apply_function or airflow_compat=True, not both")
        super().__init__(apply_function=airflow_message_batch if o.airflow_compat else apply_function, **parsed.common)
        address = parse_url(parsed.url)
        if o.region:
            address = dataclasses.replace(address, region=o.region)
        self.options = o
        self.url = parsed.url
        self.address = address
        self.conn_id = o.conn_id
        self.wait_time_seconds = _as_int("wait_time_seconds", o.wait_time_seconds, 0, MAX_WAIT_SECONDS)
        self.max_messages = min(_as_int("max_messages", o.max_messages, 1), MAX_BATCH)
        self.batches = _as_int("batches", o.batches, 1, 100)
        self.receives = _as_int("receives", o.receives, 1, 20)
        self.visibility_timeout = (
            None if o.visibility_timeout is None else _as_int("visibility_timeout", o.visibility_timeout, 0, 43200)
        )
        self.airflow_compat = o.airflow_compat
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        # receipt handle -> (message id, when its visibility was last set, monotonic)
        self._inflight: dict[str, tuple[str, float]] = {}
        self._visibility = 30
        self._extender: asyncio.Task[None] | None = None
        # second copies of a message received twice while unacknowledged, deleted with the first
        self._duplicates: list[Message] = []
        # message ids received and not yet acknowledged (a second copy is a duplicate)
        self._pending_ids: set[str] = set()
        # received by the pollers, not yet handed to the triggerer
        self._ready: deque[Message] = deque()
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._pollers: list[asyncio.Task[None]] = []
        self._calls = 0  # ReceiveMessage calls in flight
        self._polls_started = 0  # ReceiveMessage calls made, each numbered in turn
        self._empty_poll = -1  # the number of the latest call that brought nothing new
        self._failure: Exception | None = None

    # -- the broker side ---------------------------------------------------------------

    async def open(self) -> None:
        stack = AsyncExitStack()
        try:
            client = await stack.enter_async_context(
                get_session().create_client("sqs", config=_TRIGGER_CONFIG, **self.address.client_kwargs())
            )
            attributes = await client.get_queue_attributes(
                QueueUrl=self.address.queue_url, AttributeNames=["VisibilityTimeout"]
            )
        except BaseException:
            await stack.aclose()
            raise
        self._stack, self._client = stack, client
        queue_visibility = int(attributes.get("Attributes", {}).get("VisibilityTimeout", 30))
        self._visibility = self.visibility_timeout if self.visibility_timeout is not None else queue_visibility

    async def receive(self, max_messages: int) -> list[Message]:
        """Up to `max_messages` of what the receives in flight brought back; waits for the first.

        The first call starts `receives` pollers, which keep long-polling while
        the triggerer commits, as long as the messages held unacknowledged stay
        under `batches * max_messages`. Returns an empty list when a long poll
        (`wait_time_seconds`) came back with nothing.
        """
        assert self._client is not None, "open() was not called"
        if not self._pollers:
            self._pollers = [
                asyncio.create_task(self._poll(), name=f"sqs receive {self.address.queue} #{i}")
                for i in range(self.receives)
            ]
        since = self._polls_started
        while not self._ready:
            if self._failure is not None:
                raise self._failure
            if self._empty_poll >= since:
                return []  # a long poll begun since this receive came back with nothing new
            if self._calls == 0 and not self._has_room():
                return []  # it holds all it may: what it holds must be acknowledged first
            self._arrived.clear()
            await self._arrived.wait()
        count = min(max(1, max_messages), len(self._ready))
        return [self._ready.popleft() for _ in range(count)]

    def _has_room(self) -> bool:
        # Counting the calls in flight as full: messages received must never exceed the cap.
        held = len(self._inflight) + (self._calls + 1) * self.max_messages
        return held <= self.batches * self.max_messages

    async def _poll(self) -> None:
        """One of the `receives` loops: a ReceiveMessage whenever there is room for what it may bring."""
        while True:
            while not self._has_room():
                self._room.clear()
                await self._room.wait()
            self._calls += 1
            ticket = self._polls_started
            self._polls_started += 1
            try:
                raw = await self._receive_once(self.max_messages, self.wait_time_seconds)
            except Exception as exc:
                # receive() raises it: the triggerer closes, backs off and opens again.
                self._failure = exc
                return
            finally:
                self._calls -= 1
                self._arrived.set()
                self._room.set()  # a call that came back short leaves room for another
            fresh = self._track(raw)
            self._ready.extend(fresh)
            if not fresh:
                self._empty_poll = max(self._empty_poll, ticket)
            if not raw and self.wait_time_seconds == 0:
                await asyncio.sleep(EMPTY_SHORT_POLL_PAUSE)  # short polls of an empty queue: not a busy loop

    async def _receive_once(self, count: int, wait: int) -> list[dict[str, Any]]:
        request: dict[str, Any] = {
            "QueueUrl": self.address.queue_url,
            "MaxNumberOfMessages": count,
            "WaitTimeSeconds": wait,
            "MessageAttributeNames": ["All"],
            "MessageSystemAttributeNames": ["All"],
        }
        if self.visibility_timeout is not None:
            request["VisibilityTimeout"] = self.visibility_timeout
        response = await self._client.receive_message(**request)
        raw: list[dict[str, Any]] = response.get("Messages", [])
        return raw

    def _track(self, raw_messages: list[dict[str, Any]]) -> list[Message]:
        """Messages from a receive, remembered until acknowledged (for extension and release).

        A standard queue may hand one message to two receives in flight: the second
        copy is kept aside and deleted with the first, never delivered twice.
        """
        if not raw_messages:
            return []
        now = time.monotonic()
        fresh: list[Message] = []
        for message in (self._message(raw) for raw in raw_messages):
            self._inflight[message.handle.receipt_handle] = (str(message.metadata["message_id"]), now)
            if message.metadata["message_id"] in self._pending_ids:
                self._duplicates.append(message)
            else:
                self._pending_ids.add(message.metadata["message_id"])
                fresh.append(message)
        self._start_extender()
        return fresh

    def _message(self, raw: dict[str, Any]) -> Message:
        attributes: dict[str, dict[str, Any]] = raw.get("MessageAttributes") or {}
        system: dict[str, str] = raw.get("Attributes") or {}
        encoding = attributes.get(ENCODING_ATTRIBUTE, {}).get("StringValue")
        text = raw.get("Body", "")
        body = base64.b64decode(text) if encoding == "base64" else text.encode("utf-8")
        message_id = raw["MessageId"]
        metadata: dict[str, Any] = {
            "broker": "sqs",
            "queue": self.address.queue,
            "queue_url": self.address.queue_url,
            "message_id": message_id,
        }
        if "SentTimestamp" in system:
            metadata["published_at"] = datetime.fromtimestamp(int(system["SentTimestamp"]) / 1000, UTC).isoformat()
        if "ApproximateReceiveCount" in system:
            metadata["receive_count"] = int(system["ApproximateReceiveCount"])
        for name, key in (
            ("MessageGroupId", "message_group_id"),
            ("SequenceNumber", "sequence_number"),
            ("MessageDeduplicationId", "deduplication_id"),
        ):
            if name in system:
                metadata[key] = system[name]
        return Message(
            body=body,
            dedupe_key=f"{self.address.queue}/{message_id}",
            headers={name: _attribute_text(v) for name, v in attributes.items() if name != ENCODING_ATTRIBUTE},
            metadata=metadata,
            handle=_Receipt(raw["ReceiptHandle"], raw),
        )

    async def ack(self, messages: list[Message]) -> None:
        """Delete the messages: `DeleteMessageBatch` calls of 10, all in flight at once."""
        handles = [m.handle.receipt_handle for m in messages if isinstance(m.handle, _Receipt)]
        acked = {m.metadata.get("message_id") for m in messages}
        handles += [d.handle.receipt_handle for d in self._duplicates if d.metadata.get("message_id") in acked]
        self._duplicates = [d for d in self._duplicates if d.metadata.get("message_id") not in acked]
        if not handles:
            return
        assert self._client is not None, "open() was not called"
        chunks = [handles[start : start + MAX_BATCH] for start in range(0, len(handles), MAX_BATCH)]
        try:
            await asyncio.gather(*(self._delete(chunk) for chunk in chunks))
        finally:
            self._pending_ids -= {str(i) for i in acked if i is not None}
            self._room.set()

    async def _delete(self, handles: list[str]) -> None:
        response = await self._client.delete_message_batch(
            QueueUrl=self.address.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)],
        )
        for handle in handles:
            self._inflight.pop(handle, None)
        for failure in response.get("Failed", []):
            # The message outlived its visibility and was received again: that
            # delivery is deduped by its MessageId and deleted then.
            log.warning("sqs %s: delete failed: %s %s", self.address.queue, failure.get("Code"), failure.get("Message"))

    def _start_extender(self) -> None:
        if self._visibility > 0 and (self._extender is None or self._extender.done()):
            self._extender = asyncio.create_task(self._extend_visibility(), name=f"sqs visibility {self.address.queue}")

    async def _extend_visibility(self) -> None:
        """Keep received messages hidden while their batch is being committed.

        Wakes when the oldest unacknowledged message has used half its visibility
        timeout and extends it by a full timeout; ends when nothing is unacknowledged.
        """
        half = self._visibility / 2
        while self._inflight:
            oldest = min(since for _, since in self._inflight.values())
            await asyncio.sleep(max(0.0, oldest + half - time.monotonic()))
            now = time.monotonic()
            due = [h for h, (_, since) in self._inflight.items() if since + half <= now]
            for start in range(0, len(due), MAX_BATCH):
                chunk = due[start : start + MAX_BATCH]
                try:
                    await self._change_visibility(chunk, self._visibility)
                except Exception as exc:
                    log.warning("sqs %s: could not extend visibility: %s", self.address.queue, exc)
                for handle in chunk:
                    if handle in self._inflight:
                        self._inflight[handle] = (self._inflight[handle][0], now)

    async def _change_visibility(self, handles: list[str], seconds: int) -> None:
        response = await self._client.change_message_visibility_batch(
            QueueUrl=self.address.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": seconds} for i, h in enumerate(handles)],
        )
        for failure in response.get("Failed", []):
            log.debug("sqs %s: visibility change failed: %s", self.address.queue, failure)

    async def close(self) -> None:
        """Make unacknowledged messages visible again at once, then disconnect.

        The client is closed even when `close` itself is cancelled (the
        triggerer stopping while it reconnects).
        """
        pollers, self._pollers = self._pollers, []
        for poller in pollers:
            poller.cancel()
        if pollers:
            await asyncio.wait(pollers)  # their calls in flight end first: what they got is released too
        extender, self._extender = self._extender, None
        handles = list(self._inflight)
        self._inflight.clear()
        self._duplicates.clear()
        self._pending_ids.clear()
        self._ready.clear()
        self._failure = None
        self._calls = 0
        client = self._client
        try:
            if extender is not None:
                extender.cancel()
                await asyncio.wait([extender])  # never raises the task's CancelledError here
            if client is not None and handles:
                for start in range(0, len(handles), MAX_BATCH):
                    try:
                        await self._change_visibility(handles[start : start + MAX_BATCH], 0)
                    except Exception as exc:
                        # They come back after their visibility timeout instead.
                        log.warning("sqs %s: could not release unacknowledged messages: %s", self.address.queue, exc)
                        break
        finally:
            stack, self._stack, self._client = self._stack, None, None
            if stack is not None:
                with contextlib.suppress(Exception):
                    await stack.aclose()

    async def lag(self) -> int | None:
        """`ApproximateNumberOfMessages`: visible messages waiting in the queue."""
        if self._client is None:
            return None
        response = await self._client.get_queue_attributes(
            QueueUrl=self.address.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(response["Attributes"]["ApproximateNumberOfMessages"])

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "url": mask_url(self.url),
            "broker": "sqs",
            "queue": self.address.queue,
            "queue_url": self.address.queue_url,
            "region": self.address.region,
            "wait_time_seconds": self.wait_time_seconds,
            "max_messages": self.max_messages,
            "batches": self.batches,
            "receives": self.receives,
        }
        if self.visibility_timeout is not None:
            described["visibility_timeout"] = self.visibility_timeout
        if self.airflow_compat:
            described["airflow_compat"] = True
        if self.conn_id is not None:
            described["conn_id"] = self.conn_id
        return described

    def consumer_key(self) -> str:
        # Watchers that differ only in how they shape the payload share one
        # consumer: two consumers of one queue would each get only part of it.
        described = self.describe()
        described.pop("airflow_compat", None)
        return json.dumps(described, sort_keys=True, default=str)


# -- the publisher ---------------------------------------------------------------------


class SqsPublisher(BrokerPublisher):
    """Sends to SQS queues through one client per endpoint, region and credentials.

    Headers become String message attributes (SQS allows 10). A body that is
    not text SQS accepts is sent as base64 and marked so that Herald's trigger
    restores the bytes. On a FIFO queue the message group is `?message_group_id=`
    (default `herald`), and each call gets its own deduplication id, so SQS drops
    the duplicates of one call's retries but never two calls.
    """

    options_class = SqsOptions

    @classmethod
    def pool_key(cls, url: str) -> str:
        return parse_url(cls.parse(from_aws_url(url)).url).connection_key()

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._holder: AsyncGenerator[Any, None] | None = None
        self._client: Any = None

    async def open(self) -> None:
        address = parse_url(self.parse(from_aws_url(self.url)).url)
        # The client lives inside an async generator parked at its `yield`: when an
        # event loop that never closed the pool shuts down, asyncio.run() closes
        # pending generators, which closes the client inside its own loop instead
        # of leaking its HTTP session.
        self._holder = _hold_client(address.client_kwargs())
        self._client = await self._holder.__anext__()

    async def publish(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        parsed = self.parse(from_aws_url(url))
        address = parse_url(parsed.url)
        options: SqsOptions = parsed.options
        text, encoded = encode_body(body)
        attributes: dict[str, dict[str, str]] = {
            name: {"DataType": "String", "StringValue": str(value)} for name, value in headers.items()
        }
        if encoded:
            attributes[ENCODING_ATTRIBUTE] = {"DataType": "String", "StringValue": "base64"}
        request: dict[str, Any] = {"QueueUrl": address.queue_url, "MessageBody": text}
        if attributes:
            request["MessageAttributes"] = attributes
        if address.fifo:
            request["MessageGroupId"] = options.message_group_id or "herald"
            request["MessageDeduplicationId"] = uuid.uuid4().hex
        await self._client.send_message(**request)

    async def close(self) -> None:
        holder, self._holder, self._client = self._holder, None, None
        if holder is not None:
            await holder.aclose()


async def _hold_client(kwargs: dict[str, Any]) -> AsyncGenerator[Any, None]:
    async with get_session().create_client("sqs", config=_TRIGGER_CONFIG, **kwargs) as client:
        yield client
