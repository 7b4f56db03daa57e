"""Wake-ups between processes on one machine: a Unix datagram socket per database.

A publisher of `local://` messages, `herald events emit` or `herald dags trigger`
commits, then sends one datagram naming a channel ("local:QUEUE", "scheduler").
The process running the triggerer and scheduler listens and wakes the waiting
coroutine at once, so nothing sleeps a fixed time on the hot path. A lost
datagram costs only latency: every waiter also re-checks the database on a
short timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import tempfile
from collections import defaultdict

SCHEDULER = "scheduler"


def socket_path(database_url: str) -> str:
    """Where the wake-up socket of the database at `database_url` lives."""
    digest = hashlib.sha1(database_url.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"herald-{digest}.sock")


def local_channel(queue: str) -> str:
    """The channel woken when a message is published to `local://queue`."""
    return f"local:{queue}"


def notify(database_url: str, *channels: str) -> None:
    """Wake the listeners of `channels` (best effort, never blocks)."""
    path = socket_path(database_url)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for channel in channels:
            # Nobody listening, or the listener's buffer full: the waiter's
            # fallback poll picks the change up.
            with contextlib.suppress(OSError):
                sock.sendto(channel.encode(), path)


class Listener:
    """Receives wake-ups for one database and sets the matching asyncio events."""

    def __init__(self, database_url: str) -> None:
        self.path = socket_path(database_url)
        self._events: dict[str, list[asyncio.Event]] = defaultdict(list)
        self._sock: socket.socket | None = None

    def event(self, channel: str) -> asyncio.Event:
        """An event set whenever `channel` is notified (also from this process)."""
        ev = asyncio.Event()
        self._events[channel].append(ev)
        return ev

    def fire(self, channel: str) -> None:
        """Wake `channel` from inside this process."""
        for ev in self._events.get(channel, ()):
            ev.set()

    def start(self) -> None:
        """Bind the socket and start reading it on the running loop."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(self.path)
        sock.setblocking(False)
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(512)
            except (BlockingIOError, InterruptedError):
                return
            self.fire(data.decode(errors="replace"))

    def stop(self) -> None:
        """Stop listening and remove the socket file."""
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
