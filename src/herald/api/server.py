"""The API's HTTP server inside a Herald process: uvicorn without its ten wake-ups a second.

uvicorn's own loop wakes every 0.1 s, to refresh the `Date` header once a second
and to see whether it should stop. In a Herald process that is otherwise idle
those wake-ups are a large part of what the process does. Here the `Date` header
is made when a response asks for it (at most once a second), and the loop sleeps
until `exit`.
"""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate

import uvicorn
from uvicorn.server import ServerState

__all__ = ["ApiServer"]


class _HeadersOfNow(ServerState):
    """uvicorn's shared state whose `default_headers` carry the Date of the current second."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._config = config
        self._second = -1
        self._headers: list[tuple[bytes, bytes]] = []
        super().__init__()

    @property
    def default_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers of every response: Date (when configured) and the configured ones."""
        now = int(time.time())
        if now != self._second:
            date = [(b"date", formatdate(now, usegmt=True).encode())] if self._config.date_header else []
            self._headers = date + self._config.encoded_headers
            self._second = now
        return self._headers

    @default_headers.setter
    def default_headers(self, value: list[tuple[bytes, bytes]]) -> None:
        """uvicorn's tick sets them; here they are made when read."""


class ApiServer(uvicorn.Server):
    """A uvicorn server whose loop sleeps until `exit` (the Date header is made per response)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.server_state = _HeadersOfNow(config)
        self._exit = asyncio.Event()

    def exit(self) -> None:
        """Stop serving: the loop ends now."""
        self.should_exit = True
        self._exit.set()

    async def main_loop(self) -> None:
        """Wait for `exit` (uvicorn's loop polls `should_exit` ten times a second)."""
        await self._exit.wait()
