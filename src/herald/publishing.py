"""`herald.publish(url, body)`: send a message to any queue Herald can watch.

Tasks are plain functions, so `publish` is synchronous; it runs the broker's
async publisher on one background event loop per process, which keeps one
connection per broker alive across calls (a worker publishing an alert per
run does not reconnect each time).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from sqlalchemy import Engine

from herald.config import Settings
from herald.triggers.registry import publisher, scheme_of

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def to_bytes(body: bytes | str | dict[str, Any] | list[Any] | int | float | bool | None) -> bytes:
    """A body as bytes: bytes as they are, text as UTF-8, anything else as JSON."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body).encode("utf-8")


async def apublish(url: str, body: Any, headers: dict[str, str] | None = None) -> None:
    """Publish from async code: `await apublish("local://alerts", {"x": 1})`."""
    send = publisher(scheme_of(url))
    await send(url, to_bytes(body), dict(headers or {}))


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="herald-publish", daemon=True)
            thread.start()
            _loop = loop
            atexit.register(_close_publishers, loop)
        return _loop


def publish(url: str, body: Any, headers: dict[str, str] | None = None, *, timeout: float = 30.0) -> None:
    """Send `body` to the queue at `url` (any scheme Herald watches) and wait until sent.

    Args:
        url: the queue URL, for example `local://alerts` or `redis://127.0.0.1:6379/0?stream=s`.
        body: bytes, text, or anything JSON-serialisable (sent as JSON).
        headers: message headers or attributes, where the broker has them.
    """
    future: Future[None] = asyncio.run_coroutine_threadsafe(apublish(url, body, headers), _background_loop())
    future.result(timeout)


async def aclose_publishers() -> None:
    """Close every broker connection the publishers opened on the running loop."""
    import sys

    for name, module in list(sys.modules.items()):
        close = getattr(module, "close_publishers", None) if name.startswith("herald.triggers.") else None
        if close is not None:
            with contextlib.suppress(Exception):
                await close()


def close_publishers() -> None:
    """Close the connections `publish` keeps (they reopen on the next call)."""
    loop = _loop
    if loop is None or loop.is_closed() or not loop.is_running():
        return
    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(aclose_publishers(), loop).result(10)


def _close_publishers(loop: asyncio.AbstractEventLoop) -> None:
    """At exit: close the publishers' connections on the loop that opened them, then stop it."""
    close_publishers()
    if not loop.is_closed():
        loop.call_soon_threadsafe(loop.stop)


def _engine(url: str) -> Engine:
    from herald.store.db import make_engine
    from herald.store.migrate import is_current, upgrade

    with _engines_lock:
        if url not in _engines:
            if not _engines:
                atexit.register(_dispose_engines)
            engine = make_engine(url, pool_size=1)
            if not is_current(engine):
                upgrade(engine)  # publishing before Herald ever started: the queue still works
            _engines[url] = engine
        return _engines[url]


def _dispose_engines() -> None:
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def local_publish(
    queue: str,
    bodies: Sequence[bytes],
    headers: dict[str, str] | None = None,
    settings: Settings | None = None,
) -> list[int]:
    """Append messages to `local://queue` and wake the triggerer; returns their ids."""
    from herald.store import local_queue

    url = (settings or Settings()).db_url
    return local_queue.put(_engine(url), queue, bodies, headers)
