"""`kinesis://STREAM`: Amazon Kinesis data streams, and local endpoints such as moto.

URLs:

- `kinesis://orders?region_name=eu-west-1`: the stream on AWS's endpoint of the
  region (`kinesis+https://` the same);
- `kinesis+http://127.0.0.1:5005/orders?region_name=us-east-1` (or
  `kinesis+https://HOST:PORT/orders`): the stream on a local endpoint, as
  `sqs+http://` does for SQS;
- `kinesis://_/orders?conn_id=aws_default`: the endpoint and credentials of a
  connection (`HERALD_CONN_AWS_DEFAULT=kinesis+http://KEY:SECRET@127.0.0.1:5005`,
  or `aws://KEY:SECRET@` for credentials alone).

Credentials come from the URL's user and password (best from a connection),
else from botocore's usual chain (`AWS_ACCESS_KEY_ID`... variables, `~/.aws`,
instance roles). The region comes from `?region_name=` (or `region=`), else
from botocore's configuration, else `us-east-1`.

Delivery: every shard is read with `GetShardIterator`/`GetRecords`. Kinesis
keeps no consumer position and has no acknowledgement, so each message carries
its `(shard id, sequence number)` as `Message.checkpoint`; the triggerer
commits it in the transaction that stores the event, and hands the committed
positions back through `resume()` before each `open()`, from which every shard
is read on `AFTER_SEQUENCE_NUMBER`. A record is therefore neither lost nor made
twice across a kill -9 (docs/adr/0003-stream-checkpoints.md).

Resharding: a shard closed by a split or a merge is read to its end (GetRecords
stops giving a next iterator) before its children are read, so the records of
one partition key stay in order; new shards are discovered every
`shard_refresh_interval` seconds, and at once when a shard ends. Kinesis has no
long poll: when every shard is idle, GetRecords is called again after
`poll_interval` seconds (AWS allows five calls per second per shard).

The dedupe key is the stream, the shard id and the sequence number. Kinesis
records have no headers; their partition key is `Message.key`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit, urlunsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from herald.triggers.base import (
    BaseEventTrigger,
    BrokerOptions,
    BrokerPublisher,
    Message,
    ParsedOptions,
    parse_options,
)
from herald.triggers.urls import mask_url

DEFAULT_REGION = "us-east-1"
#: GetRecords returns at most this many records per call
MAX_RECORDS = 10_000
#: how long one `receive` polls idle shards before it returns an empty batch
RECEIVE_WAIT = 5.0
# Few retries inside one call: the triggerer retries forever with its own
# back-off, and shows the error in `herald watchers list` meanwhile.
_CONFIG = AioConfig(retries={"mode": "standard", "max_attempts": 3})

_SCHEMES = {"kinesis": "https", "kinesis+https": "https", "kinesis+http": "http"}
_STREAM_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,128}$")
_POSITIONS = ("TRIM_HORIZON", "LATEST")


@dataclass(frozen=True)
class KinesisOptions(BrokerOptions):
    """The options of a Kinesis trigger and publisher (URL query or keyword arguments).

    Attributes:
        region: the AWS region (Airflow's `region_name`).
        initial_position: where a shard with no checkpoint is read from:
            `TRIM_HORIZON` (its oldest record, the default) or `LATEST` (records
            put from when the watcher connects, until a shard's first record is
            committed: a restart before that starts at LATEST again). Shards made
            by resharding are always read from their beginning, after their parents.
        max_records: records per GetRecords call (1-10000).
        poll_interval: seconds between GetRecords calls while every shard is idle.
        shard_refresh_interval: seconds between listings of the stream's shards
            (how soon shards made by resharding are read).
        partition_key: the publisher's partition key (default: a random one per
            record, which spreads records over the shards).
    """

    region: str | None = None
    initial_position: str = "TRIM_HORIZON"
    max_records: int = 1000
    poll_interval: float = 1.0
    shard_refresh_interval: float = 10.0
    partition_key: str | None = None

    BROKER: ClassVar[str] = "Kinesis"
    ALIASES: ClassVar[dict[str, str]] = {"region_name": "region", "aws_conn_id": "conn_id"}


@dataclass(frozen=True)
class KinesisAddress:
    """Which stream, on which endpoint, with which credentials, parsed from a `kinesis://` URL."""

    stream: str
    #: None: AWS's own endpoint of the region
    endpoint_url: str | None
    region: str | None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)

    def client_kwargs(self) -> dict[str, Any]:
        """Arguments of `create_client("kinesis", ...)`."""
        kwargs: dict[str, Any] = {"region_name": self.region or _default_region()}
        if self.endpoint_url is not None:
            kwargs["endpoint_url"] = self.endpoint_url
        if self.access_key is not None:
            kwargs["aws_access_key_id"] = self.access_key
            kwargs["aws_secret_access_key"] = self.secret_key or ""
        return kwargs

    def connection_key(self) -> str:
        """What identifies one client: endpoint, region and credentials."""
        return "\x00".join((self.endpoint_url or "", self.region or "", self.access_key or "", self.secret_key or ""))


def _default_region() -> str:
    # botocore's own configuration (AWS_DEFAULT_REGION, ~/.aws/config) when set.
    region: str | None = get_session().get_config_variable("region")
    return region or DEFAULT_REGION


def canonical_url(url: str) -> str:
    """`kinesis://STREAM` as `kinesis://_/STREAM`: the one form where the host is the endpoint.

    So a connection (`conn_id`) can fill in the host of either spelling without
    taking the place of the stream name.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "kinesis" or parts.path.strip("/"):
        return url
    credentials, at, stream = parts.netloc.rpartition("@")
    if not stream:
        return url
    return urlunsplit((parts.scheme, f"{credentials}{at}_", f"/{stream}", parts.query, parts.fragment))


def display_url(url: str) -> str:
    """The canonical `kinesis://_/STREAM` back as the user writes it, `kinesis://STREAM`."""
    parts = urlsplit(url)
    credentials, at, host = parts.netloc.rpartition("@")
    stream = parts.path.strip("/")
    if parts.scheme.lower() != "kinesis" or host not in ("", "_") or not stream or "/" in stream:
        return url
    return urlunsplit((parts.scheme, f"{credentials}{at}{stream}", "", parts.query, parts.fragment))


def parse_url(url: str, region: str | None = None) -> KinesisAddress:
    """The address of the stream at `url` (`kinesis://`, `kinesis+http://`, `kinesis+https://`)."""
    url = canonical_url(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(
            f"{mask_url(url)!r} is not a Kinesis URL: expected kinesis://STREAM or kinesis+http://HOST:PORT/STREAM"
        )
    segments = [s for s in parts.path.split("/") if s]
    host = parts.netloc.rpartition("@")[2]
    if len(segments) != 1:
        raise ValueError(
            f"{mask_url(url)!r} is not a Kinesis stream URL: expected kinesis://STREAM or {scheme}://HOST:PORT/STREAM"
        )
    stream = unquote(segments[0])
    if not _STREAM_NAME.match(stream):
        raise ValueError(f"{stream!r} is not a Kinesis stream name: 1-128 letters, digits, '_', '.' or '-'")
    endpoint: str | None = None
    if host and host != "_":
        endpoint = f"{_SCHEMES[scheme]}://{host}"
    elif scheme == "kinesis+http":
        raise ValueError(f"{mask_url(url)!r}: kinesis+http:// needs the endpoint: kinesis+http://HOST:PORT/{stream}")
    return KinesisAddress(
        stream=stream,
        endpoint_url=endpoint,
        region=region,
        access_key=unquote(parts.username) if parts.username else None,
        secret_key=unquote(parts.password) if parts.password is not None else None,
    )


def _parse(url: str, options: dict[str, Any]) -> tuple[ParsedOptions[KinesisOptions], KinesisAddress]:
    parsed = parse_options(KinesisOptions, canonical_url(url), options)
    return parsed, parse_url(parsed.url, parsed.options.region)


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


@dataclass
class _Shard:
    """What the trigger knows of one shard while it reads it."""

    shard_id: str
    parents: tuple[str, ...]
    #: read from its first record when it has no checkpoint (a child of a shard we read)
    from_beginning: bool
    #: the sequence number of the last record handed out (None: nothing yet)
    position: str | None = None
    iterator: str | None = None
    #: read to its end (a closed shard whose GetRecords gave no next iterator)
    finished: bool = False


class KinesisTrigger(BaseEventTrigger):
    """Consumes every shard of an Amazon Kinesis data stream, resharding included.

    Args:
        url: `kinesis://STREAM`, `kinesis+http://HOST:PORT/STREAM` or
            `kinesis+https://HOST[:PORT]/STREAM`, with credentials as user and
            password if not from the environment.
        region: the AWS region (`region_name` too).
        initial_position: `TRIM_HORIZON` (default) or `LATEST`, for shards with no checkpoint.
        max_records: records per GetRecords call (default 1000).
        poll_interval: seconds between polls of idle shards (default 1).
        shard_refresh_interval: seconds between shard listings (default 10).
        conn_id: the connection the URL was resolved with (`aws_conn_id` too).
    """

    scheme = "kinesis"

    def __init__(self, url: str, **options: Any) -> None:
        parsed, address = _parse(url, options)
        super().__init__(**parsed.common)
        o = parsed.options
        self.options = o
        self.url = parsed.url
        self.address = address
        self.conn_id = o.conn_id
        position = o.initial_position.upper()
        if position not in _POSITIONS:
            raise ValueError(f"initial_position must be one of {', '.join(_POSITIONS)}, got {o.initial_position!r}")
        self.initial_position = position
        if not 1 <= o.max_records <= MAX_RECORDS:
            raise ValueError(f"max_records must be between 1 and {MAX_RECORDS}, got {o.max_records}")
        self.max_records = o.max_records
        if o.poll_interval <= 0 or o.shard_refresh_interval <= 0:
            raise ValueError("poll_interval and shard_refresh_interval must be positive numbers of seconds")
        self.poll_interval = o.poll_interval
        self.shard_refresh_interval = o.shard_refresh_interval
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        #: shard id -> the last sequence number committed (given by `resume`, moved on by `ack`)
        self._committed: dict[str, str] = {}
        self._shards: dict[str, _Shard] = {}
        self._next_listing = 0.0
        self._turn = 0
        #: shard id -> when its LATEST iterator was first taken (kept across reconnects)
        self._latest_since: dict[str, datetime] = {}

    # -- the broker side ---------------------------------------------------------------

    def resume(self, checkpoints: dict[str, str]) -> None:
        """Read each shard on after the sequence number committed with its last event."""
        self._committed = dict(checkpoints)

    async def open(self) -> None:
        stack = AsyncExitStack()
        try:
            client = await stack.enter_async_context(
                get_session().create_client("kinesis", config=_CONFIG, **self.address.client_kwargs())
            )
            self._stack, self._client = stack, client
            # Iterators and read positions start again from what was committed:
            # what the last connection received but nobody committed is read again.
            self._shards = {}
            await self._list_shards(first=True)
            for shard in self._readable():
                # Taken now, so that LATEST means "from when the watcher connected".
                shard.iterator = await self._iterator(shard)
        except BaseException:
            self._stack, self._client = None, None
            await stack.aclose()
            raise

    async def _list_shards(self, first: bool = False) -> None:
        """Learn the stream's shards: new ones (resharding) join, expired ones leave."""
        listed: list[dict[str, Any]] = []
        request: dict[str, Any] = {"StreamName": self.address.stream}
        while True:
            response = await self._client.list_shards(**request)
            listed += response.get("Shards", [])
            token = response.get("NextToken")
            if not token:
                break
            request = {"NextToken": token}  # ListShards refuses the stream name beside a token
        ids = {s["ShardId"] for s in listed}
        for shard in listed:
            shard_id = shard["ShardId"]
            if shard_id in self._shards:
                continue
            parents = tuple(p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p)
            self._shards[shard_id] = _Shard(
                shard_id=shard_id,
                parents=parents,
                # A shard made after we started, or whose parent we read, is read
                # whole: its records come after the parent's, none before us.
                from_beginning=not first or any(p in ids for p in parents),
                position=self._committed.get(shard_id),
            )
        for shard_id in [s for s in self._shards if s not in ids]:
            # Past the stream's retention: nothing left to read in it.
            del self._shards[shard_id]
        self._next_listing = time.monotonic() + self.shard_refresh_interval

    def _readable(self) -> list[_Shard]:
        """Shards to read now: not finished, and every parent still listed read to its end."""
        return [
            s
            for s in sorted(self._shards.values(), key=lambda s: s.shard_id)
            if not s.finished and all(p not in self._shards or self._shards[p].finished for p in s.parents)
        ]

    async def _iterator(self, shard: _Shard) -> str | None:
        request: dict[str, Any] = {"StreamName": self.address.stream, "ShardId": shard.shard_id}
        if shard.position is not None:
            request.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=shard.position)
        elif shard.from_beginning or self.initial_position == "TRIM_HORIZON":
            request["ShardIteratorType"] = "TRIM_HORIZON"
        elif shard.shard_id in self._latest_since:
            # A LATEST iterator taken again (expired, or after a reconnect): from when the
            # first was taken, so that nothing put since is skipped.
            request.update(ShardIteratorType="AT_TIMESTAMP", Timestamp=self._latest_since[shard.shard_id])
        else:
            self._latest_since[shard.shard_id] = datetime.now(UTC)
            request["ShardIteratorType"] = "LATEST"
        response = await self._client.get_shard_iterator(**request)
        iterator: str | None = response.get("ShardIterator")
        return iterator

    async def receive(self, max_messages: int) -> list[Message]:
        """Records of every readable shard, up to `max_messages`.

        Polls idle shards every `poll_interval` seconds and returns an empty
        batch after `RECEIVE_WAIT` seconds without records (Kinesis has no long poll).
        """
        assert self._client is not None, "open() was not called"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RECEIVE_WAIT
        while True:
            if time.monotonic() >= self._next_listing:
                try:
                    await self._list_shards()
                except Exception as exc:
                    if _error_code(exc) != "LimitExceededException":
                        raise
                    # ListShards is limited per account; the known shards are read meanwhile.
                    self._next_listing = time.monotonic() + self.shard_refresh_interval
            messages = await self._read_round(max(1, max_messages))
            if messages or loop.time() >= deadline:
                return messages
            await asyncio.sleep(self.poll_interval)

    async def _read_round(self, max_messages: int) -> list[Message]:
        """One GetRecords per readable shard (children once their parents are finished), up to `max_messages`."""
        messages: list[Message] = []
        readable = self._readable()
        # Each round starts at the next shard, so a busy shard cannot starve the others
        # of room in the batch.
        self._turn = (self._turn + 1) % max(1, len(readable))
        for shard in readable[self._turn :] + readable[: self._turn]:
            wanted = max_messages - len(messages)
            if wanted <= 0:
                break
            try:
                response = await self._get_records(shard, min(self.max_records, wanted))
            except Exception as exc:
                if _error_code(exc) != "ProvisionedThroughputExceededException":
                    raise
                # Over the shard's read limit (five calls or 2 MB a second, shared with
                # other consumers): this shard waits for the next round; the others go on.
                continue
            if response is None:
                continue
            for record in response.get("Records", []):
                messages.append(self._message(shard.shard_id, record))
                shard.position = str(record["SequenceNumber"])
            shard.iterator = response.get("NextShardIterator")
            if shard.iterator is None:
                # A closed shard read to its end: its children may be read now (from
                # the next round on, so that its records come first), and are listed at once.
                shard.finished = True
                self._next_listing = 0.0
        return messages

    async def _get_records(self, shard: _Shard, limit: int) -> dict[str, Any] | None:
        for attempt in (1, 2):
            if shard.iterator is None:
                try:
                    shard.iterator = await self._iterator(shard)
                except Exception as exc:
                    if _error_code(exc) == "ResourceNotFoundException":
                        shard.finished = True  # expired from the stream meanwhile
                        return None
                    raise
                if shard.iterator is None:
                    shard.finished = True
                    return None
            try:
                response: dict[str, Any] = await self._client.get_records(ShardIterator=shard.iterator, Limit=limit)
                return response
            except Exception as exc:
                # An iterator lives five minutes: a consumer held back by back-pressure
                # takes a new one from its position.
                if _error_code(exc) != "ExpiredIteratorException" or attempt == 2:
                    raise
                shard.iterator = None
        return None

    def _message(self, shard_id: str, record: dict[str, Any]) -> Message:
        sequence = str(record["SequenceNumber"])
        data = record.get("Data", b"")
        body = data if isinstance(data, bytes) else bytes(data)
        metadata: dict[str, Any] = {
            "broker": "kinesis",
            "stream": self.address.stream,
            "shard_id": shard_id,
            "sequence_number": sequence,
            "partition_key": record.get("PartitionKey"),
        }
        arrived = record.get("ApproximateArrivalTimestamp")
        if isinstance(arrived, datetime):
            metadata["published_at"] = arrived.astimezone(UTC).isoformat()
        return Message(
            body=body,
            dedupe_key=f"{self.address.stream}/{shard_id}/{sequence}",
            key=record.get("PartitionKey"),
            metadata=metadata,
            checkpoint=(shard_id, sequence),
        )

    async def ack(self, messages: list[Message]) -> None:
        """Nothing to tell Kinesis: remember the committed positions, should this instance reconnect."""
        for message in messages:
            if message.checkpoint is not None:
                shard_id, sequence = message.checkpoint
                self._committed[shard_id] = sequence

    async def close(self) -> None:
        """Disconnect; what was received and not committed is read again after the next `open`."""
        stack, self._stack, self._client = self._stack, None, None
        self._shards = {}
        if stack is not None:
            with contextlib.suppress(Exception):
                await stack.aclose()

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "url": mask_url(display_url(self.url)),
            "broker": "kinesis",
            "stream": self.address.stream,
            "region": self.address.region,
            "initial_position": self.initial_position,
            "max_records": self.max_records,
            "poll_interval": self.poll_interval,
            "shard_refresh_interval": self.shard_refresh_interval,
        }
        if self.address.endpoint_url is not None:
            described["endpoint_url"] = self.address.endpoint_url
        if self.conn_id is not None:
            described["conn_id"] = self.conn_id
        return described


# -- the publisher ---------------------------------------------------------------------


class KinesisPublisher(BrokerPublisher):
    """Puts records (`PutRecord`) through one client per endpoint, region and credentials.

    The partition key is `?partition_key=` when given, else a random one per
    record. Kinesis records have no headers: giving some is an error.
    """

    options_class = KinesisOptions

    @classmethod
    def parse(cls, url: str) -> ParsedOptions[Any]:
        return parse_options(KinesisOptions, canonical_url(url), {})

    @classmethod
    def pool_key(cls, url: str) -> str:
        parsed = cls.parse(url)
        return parse_url(parsed.url, parsed.options.region).connection_key()

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._holder: AsyncGenerator[Any, None] | None = None
        self._client: Any = None

    async def open(self) -> None:
        parsed = self.parse(self.url)
        address = parse_url(parsed.url, parsed.options.region)
        # The client lives inside an async generator parked at its `yield`: a loop
        # that shuts down without closing the pool closes the client in that loop.
        self._holder = _hold_client(address.client_kwargs())
        self._client = await self._holder.__anext__()

    async def publish(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        if headers:
            raise ValueError("Kinesis records have no headers; put them in the body")
        parsed = self.parse(url)
        address = parse_url(parsed.url, parsed.options.region)
        key = parsed.options.partition_key or uuid.uuid4().hex
        await self._client.put_record(StreamName=address.stream, Data=body, PartitionKey=key)

    async def close(self) -> None:
        holder, self._holder, self._client = self._holder, None, None
        if holder is not None:
            await holder.aclose()


async def _hold_client(kwargs: dict[str, Any]) -> AsyncGenerator[Any, None]:
    async with get_session().create_client("kinesis", config=_CONFIG, **kwargs) as client:
        yield client
