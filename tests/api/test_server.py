"""The API's HTTP server in a Herald process: no periodic tick, a Date on every answer, a stop at once."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from email.utils import parsedate_to_datetime

import uvicorn
from starlette.types import Receive, Scope, Send

from herald.api.server import ApiServer

#: generous: the server answers in milliseconds, this only bounds a broken test
WAIT = 30.0


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_every_answer_has_a_date_and_exit_stops_the_server_at_once() -> None:
    port = free_port()

    async def scenario() -> None:
        server = ApiServer(uvicorn.Config(hello, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
        serving = asyncio.create_task(server._serve())
        while not server.started:
            assert not serving.done(), "the server did not start"
            await asyncio.sleep(0.01)
        dates = []
        for _ in range(2):
            answer = await asyncio.to_thread(urllib.request.urlopen, f"http://127.0.0.1:{port}/", timeout=WAIT)
            assert answer.read() == b"hello"
            dates.append(parsedate_to_datetime(answer.headers["date"]))
        assert dates[0] <= dates[1]
        server.exit()
        await asyncio.wait_for(serving, WAIT)  # no tick to wait for: the loop ends on exit

    asyncio.run(scenario())
