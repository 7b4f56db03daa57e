"""`herald.publish(url, body)`: send a message to any queue Herald can watch.

Tasks are plain functions, so `publish` is synchronous; it runs the broker's
async publisher on one background event loop per process. Publishers come from
the one pool (`herald.triggers.base.publishers`), which keeps one connection
per broker and options alive across calls (a worker publishing an alert per
run does not reconnect each time); `close_publishers()` closes them all.

Importing this module loads no database library and no broker client.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from herald.triggers.base import publishers
from herald.triggers.registry import publisher_class, scheme_of

if TYPE_CHECKING:
    from herald.config import Settings

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def to_bytes(body: bytes | str | dict[str, Any] | list[Any] | int | float | bool | None) -> bytes:
    """A body as bytes: bytes as they are, text as UTF-8, anything else as JSON."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body).encode("utf-8")


async def apublish(url: str, body: Any, headers: dict[str, str] | None = None) -> None:
    """Publish from async code: `await apublish("local://alerts", {"x": 1})`.

    `?conn_id=ID` in the URL takes the host and credentials from `HERALD_CONN_<ID>`.
    """
    cls = publisher_class(scheme_of(url))
    await publishers.publish(cls, url, to_bytes(body), dict(headers or {}))


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="herald-publish", daemon=True)
            thread.start()
            _loop = loop
            atexit.register(_close_at_exit, loop)
        return _loop


def publish(url: str, body: Any, headers: dict[str, str] | None = None, *, timeout: float = 30.0) -> None:
    """Send `body` to the queue at `url` (any scheme Herald watches) and wait until sent.

    Args:
        url: the queue URL, for example `local://alerts` or `redis://127.0.0.1:6379/0?stream=s`.
        body: bytes, text, or anything JSON-serialisable (sent as JSON).
        headers: message headers or attributes, where the broker has them.
        timeout: seconds to wait for the broker.
    """
    future: Future[None] = asyncio.run_coroutine_threadsafe(apublish(url, body, headers), _background_loop())
    future.result(timeout)


async def aclose_publishers() -> None:
    """Close every publisher connection opened on the running loop."""
    await publishers.aclose()


def close_publishers() -> None:
    """Close the connections `publish` keeps (they reopen on the next call)."""
    loop = _loop
    if loop is None or loop.is_closed() or not loop.is_running():
        return
    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(publishers.aclose(), loop).result(10)


def _close_at_exit(loop: asyncio.AbstractEventLoop) -> None:
    """At exit: close the publishers on the loop that opened them, then stop it."""
    close_publishers()
    if not loop.is_closed():
        loop.call_soon_threadsafe(loop.stop)


def local_publish(
    queue: str,
    bodies: Sequence[bytes],
    headers: dict[str, str] | None = None,
    settings: Settings | None = None,
) -> list[str]:
    """Append messages to `local://queue` and wake the triggerer; returns their keys once committed.

    A message's key is its dedupe key (`dedupe_key` in its event's `extra["message"]`).
    """
    from herald.triggerer.local_queue import local_publish as put

    return put(queue, bodies, headers, settings)
