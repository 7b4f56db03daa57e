"""The API's HTTP server inside a Herald process: uvicorn, woken once a second instead of ten times.

uvicorn's own loop wakes every 0.1 s to refresh the `Date` header (once a second)
and to see whether it should stop. In a Herald process that is otherwise idle
those ten wake-ups a second are a large part of what the process does, so this
server sleeps a second between ticks and is woken at once by `exit`.
"""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn

__all__ = ["ApiServer"]

#: uvicorn refreshes the Date header on the ticks whose counter is a multiple of this
_TICKS_PER_SECOND = 10


class ApiServer(uvicorn.Server):
    """A uvicorn server whose housekeeping tick comes once a second; `exit` stops it at once."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit = asyncio.Event()

    def exit(self) -> None:
        """Stop serving: the loop ends now, not at its next tick."""
        self.should_exit = True
        self._exit.set()

    async def main_loop(self) -> None:
        """uvicorn's loop with one tick a second (every tick refreshes the Date header)."""
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            # a multiple of ten: uvicorn's `on_tick` refreshes the header on those
            counter = (counter + _TICKS_PER_SECOND) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit.wait(), 1.0)
            should_exit = await self.on_tick(counter)
