"""The API's request body cap, in front of a small application that reports what it read."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from herald.api.limits import BodyLimit

with warnings.catch_warnings():
    # starlette asks for its fork `httpx2`; httpx works the same for these tests (as tests/api/conftest.py)
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


async def _echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"read": len(body)})


def _client(limit: int) -> TestClient:
    app = Starlette(routes=[Route("/echo", _echo, methods=["POST", "GET"])])
    return TestClient(BodyLimit(app, limit))


def _chunks(total: int, size: int = 1000) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b"x" * piece


def test_a_body_within_the_cap_reaches_the_application_whole() -> None:
    client = _client(5000)
    assert client.post("/echo", content=b"x" * 5000).json() == {"read": 5000}
    assert client.post("/echo", content=_chunks(4500)).json() == {"read": 4500}  # chunked, replayed as read
    assert client.get("/echo").json() == {"read": 0}


def test_a_declared_length_past_the_cap_is_413() -> None:
    response = _client(5000).post("/echo", content=b"x" * 5001)
    assert response.status_code == 413
    body = response.json()
    assert body["error"] == "payload_too_large" and "5001 bytes" in body["message"]
    assert "HERALD_MAX_REQUEST_BYTES" in body["message"]


def test_a_chunked_body_past_the_cap_is_413_once_the_cap_was_read() -> None:
    response = _client(5000).post("/echo", content=_chunks(50_000))
    assert response.status_code == 413
    assert "more than 5000 bytes" in response.json()["message"]
