"""What every broker module shares: the contract (re-exported from `herald.sdk.triggers`),
the one options parser, and the one pool of publishers.

Options: each broker declares a frozen dataclass of its options (`SqsOptions`,
`KafkaOptions`, ...). `parse_options` fills it from, in rising priority, the
connection (`conn_id` -> `HERALD_CONN_<ID>`, else `AIRFLOW_CONN_<ID>`), the
URL's query string and the keyword arguments, converts each value to its field's type, and refuses an
unknown name with the list of valid ones. Header normalisation is done once,
when a `Message` is made (`herald.sdk.triggers.normalize_headers`).

Publishers: `publishers` keeps one open `Publisher` per (class, key, event
loop); `herald.publishing.close_publishers()` closes all of them through one path.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import types
import typing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from herald.sdk.triggers import (
    COMMON_OPTIONS,
    DEFAULT_MAX_PAYLOAD_BYTES,
    BaseEventTrigger,
    Message,
    Publisher,
    decode_body,
    header_text,
    normalize_headers,
    resolve_dotted,
)
from herald.triggers.urls import flag, with_connection

__all__ = [
    "COMMON_OPTIONS",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "BaseEventTrigger",
    "BrokerOptions",
    "BrokerPublisher",
    "Message",
    "ParsedOptions",
    "Publisher",
    "PublisherPool",
    "decode_body",
    "header_text",
    "millis_text",
    "normalize_headers",
    "parse_options",
    "publishers",
    "resolve_dotted",
]

log = logging.getLogger("herald.triggers")


@functools.lru_cache(maxsize=256)
def millis_text(millis: int) -> str:
    """A broker's timestamp in milliseconds since the epoch as ISO 8601 text (UTC).

    Remembered: the messages of a batch mostly share their millisecond, and
    formatting a date costs more than the rest of building a message.
    """
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat()


OptionsT = TypeVar("OptionsT", bound="BrokerOptions")


@dataclass(frozen=True)
class BrokerOptions:
    """Base of every broker's options.

    Attributes:
        conn_id: the connection (`HERALD_CONN_<ID>`) that gave the URL its host
            and credentials; the same for triggers and publishers.
    """

    conn_id: str | None = None

    #: the broker's name in error messages
    BROKER: ClassVar[str] = "trigger"
    #: other names accepted for an option (Airflow's, mostly): alias -> field
    ALIASES: ClassVar[dict[str, str]] = {}
    #: True when query options that are not Herald's belong to the client library
    #: (libpq's `sslmode`, redis-py's `socket_timeout`): they stay in the URL
    PASSTHROUGH_QUERY: ClassVar[bool] = False

    @classmethod
    def names(cls) -> list[str]:
        """Every option name this broker accepts, the common trigger options included."""
        return sorted({f.name for f in dataclasses.fields(cls)} | set(cls.ALIASES) | set(COMMON_OPTIONS))


@dataclass(frozen=True)
class ParsedOptions(typing.Generic[OptionsT]):
    """What `parse_options` made of a URL and keyword arguments."""

    #: the URL with the connection applied and Herald's own query options removed
    url: str
    options: OptionsT
    #: `apply_function`, `filter`, `max_payload_bytes`: for `BaseEventTrigger.__init__`
    common: dict[str, Any]


def _convert(cls: type[BrokerOptions], name: str, value: Any, hint: Any) -> Any:
    """`value` (often text from a query string) as the type `hint` of option `name`."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else Any
        origin = typing.get_origin(hint)
    try:
        if hint is bool:
            return flag(value, name)
        if hint is int:
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            return str(value)
        if origin in (tuple, list):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(i).strip() for i in items if str(i).strip())
    except (TypeError, ValueError):
        type_name = getattr(hint, "__name__", str(hint))
        raise ValueError(f"{cls.BROKER} option {name}={value!r} is not a valid {type_name}") from None
    return value


def parse_options(cls: type[OptionsT], url: str, options: dict[str, Any]) -> ParsedOptions[OptionsT]:
    """Fill `cls` from the connection, then the URL's query, then `options` (each overriding the last).

    Raises:
        ValueError: an unknown option (the message lists the valid ones) or a
            value of the wrong type.
    """
    given = dict(options)
    for alias, name in cls.ALIASES.items():
        if alias in given:
            value = given.pop(alias)
            given.setdefault(name, value)
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    conn_id = given.get("conn_id") or query.get("conn_id") or None
    resolved = with_connection(url, conn_id) if conn_id else url
    parts = urlsplit(resolved)
    query = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query[cls.ALIASES.get(key, key)] = value
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    kept: list[tuple[str, str]] = []  # query options that belong to the client library
    merged: dict[str, Any] = {}
    for key, value in query.items():
        if key in fields or key in COMMON_OPTIONS:
            merged[key] = value
        elif cls.PASSTHROUGH_QUERY:
            kept.append((key, value))
        else:
            raise ValueError(f"unknown {cls.BROKER} option {key!r} in the URL; valid: {', '.join(cls.names())}")
    for key, value in given.items():
        if key not in fields and key not in COMMON_OPTIONS:
            raise ValueError(f"unknown {cls.BROKER} option {key!r}; valid: {', '.join(cls.names())}")
        merged[key] = value
    merged["conn_id"] = conn_id
    common = {k: merged.pop(k) for k in COMMON_OPTIONS if k in merged}
    if common.get("max_payload_bytes") is not None:
        common["max_payload_bytes"] = _convert(cls, "max_payload_bytes", common["max_payload_bytes"], int)
    typed = {k: _convert(cls, k, v, hints[k]) for k, v in merged.items()}
    typed = {k: v for k, v in typed.items() if v is not None or k == "conn_id"}
    clean = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(kept), ""))
    return ParsedOptions(url=clean, options=cls(**typed), common=common)


class PublisherPool:
    """One open publisher per (publisher class, key, event loop), with one close path.

    A connection belongs to the loop that opened it, so the key includes the
    loop: `herald.publish` runs on one background loop per process, async code
    on its own. Publishers of a loop that has closed are forgotten (their
    connections died with it). A publisher that fails to send is closed and
    dropped, so the next call reconnects.
    """

    def __init__(self) -> None:
        self._open: dict[tuple[type[Publisher], str, asyncio.AbstractEventLoop], Publisher] = {}
        self._locks: dict[tuple[type[Publisher], str, asyncio.AbstractEventLoop], asyncio.Lock] = {}

    def __len__(self) -> int:
        return len(self.held())

    def held(self) -> list[Publisher]:
        """The open publishers of the running event loop (of every loop, called outside one)."""
        self._forget_closed_loops()
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        return [p for (_cls, _key, owner), p in self._open.items() if loop is None or owner is loop]

    def _forget_closed_loops(self) -> None:
        for key in [k for k in self._open if k[2].is_closed()]:
            del self._open[key]
        for key in [k for k in self._locks if k[2].is_closed()]:
            del self._locks[key]

    async def get(self, cls: type[Publisher], url: str) -> Publisher:
        """The open publisher of `cls` for `url`, opened now if there is none."""
        loop = asyncio.get_running_loop()
        key = (cls, cls.pool_key(url), loop)
        found = self._open.get(key)
        if found is not None and found.is_open:
            return found
        self._forget_closed_loops()
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            found = self._open.get(key)
            if found is not None and not found.is_open:
                await self._drop(found)
                found = None
            if found is None:
                found = cls(url)
                await found.open()
                self._open[key] = found
            return found

    async def publish(self, cls: type[Publisher], url: str, body: bytes, headers: dict[str, str]) -> None:
        """Send through the pooled publisher; on failure drop it (the next call reconnects) and raise."""
        publisher = await self.get(cls, url)
        try:
            await publisher.publish(url, body, headers)
        except BaseException:
            await self._drop(publisher)
            raise

    async def _drop(self, publisher: Publisher) -> None:
        for key, held in list(self._open.items()):
            if held is publisher:
                del self._open[key]
        with contextlib.suppress(Exception):
            await publisher.close()

    async def aclose(self) -> None:
        """Close the publishers opened on the running loop."""
        loop = asyncio.get_running_loop()
        for key, publisher in list(self._open.items()):
            if key[2] is loop:
                del self._open[key]
                self._locks.pop(key, None)
                try:
                    await publisher.close()
                except Exception as exc:
                    log.debug("closing publisher %s failed: %s", type(publisher).__name__, exc)
        self._forget_closed_loops()


class BrokerPublisher(Publisher):
    """A publisher whose URL options are its broker's options class, parsed by `parse_options`.

    So `conn_id` (in the URL's query, `?conn_id=ID`) works for every publisher,
    and connections are shared by URLs that differ only in Herald's options.
    """

    options_class: ClassVar[type[BrokerOptions]] = BrokerOptions

    @classmethod
    def parse(cls, url: str) -> ParsedOptions[Any]:
        """The URL's options, with its connection applied."""
        return parse_options(cls.options_class, url, {})

    @classmethod
    def pool_key(cls, url: str) -> str:
        return cls.parse(url).url


#: the process's one pool of publishers
publishers = PublisherPool()
