"""The request body cap: a body past `HERALD_MAX_REQUEST_BYTES` is answered 413 before it is read whole.

A declared `Content-Length` over the cap is refused without keeping the body
(it is read and dropped first, up to `DRAIN_LIMIT`, so that a client still
sending sees the answer). A body of unknown length (chunked) is kept up to the
cap, then dropped and refused; one within the cap is handed on to the
application as it was read. So no request makes the API hold more than the cap
in memory for its body.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from herald.api.errors import error_response
from herald.store.storable import DEFAULT_MAX_REQUEST

#: a refused body up to this size is read and dropped before the answer (a client
#: still sending would otherwise see the connection reset instead of the 413);
#: a larger one is answered at once and its connection closed
DRAIN_LIMIT = 64 * 1024 * 1024


class BodyLimit:
    """ASGI middleware answering 413 to a request whose body is larger than `limit` bytes."""

    def __init__(self, app: ASGIApp, limit: int = DEFAULT_MAX_REQUEST) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None:
            if declared > self.limit:
                if declared <= DRAIN_LIMIT:
                    await _drain(receive)  # so that the client, still sending, reads the answer
                await self._refuse(scope, receive, send, declared)
                return
            await self.app(scope, receive, send)  # the server delivers at most the declared length
            return
        if _no_body(scope):
            await self.app(scope, receive, send)
            return
        read: list[Message] = []
        size = 0
        while True:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request":
                break  # the client went away: the application sees it
            size += len(message.get("body", b""))
            if size > self.limit:
                if message.get("more_body", False):
                    await _drain(receive)
                await self._refuse(scope, receive, send, None)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(read, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, declared: int | None) -> None:
        size = f"{declared} bytes" if declared is not None else f"more than {self.limit} bytes"
        response = error_response(
            413,
            f"the request body is {size}; the API reads at most {self.limit} (HERALD_MAX_REQUEST_BYTES)",
            "send a smaller body: put large data elsewhere (a file, an object store) and send its location",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


async def _drain(receive: Receive) -> None:
    """Read the request body to its end (at most `DRAIN_LIMIT` bytes), keeping none of it."""
    read = 0
    while read <= DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        read += len(message.get("body", b""))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _no_body(scope: Scope) -> bool:
    """True for a request that cannot carry a body (neither a length nor chunked encoding)."""
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            return False
    return True


def _replay(read: list[Message], receive: Receive) -> Receive:
    """A `receive` that gives back the messages already read, then the real ones."""
    pending = list(read)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
