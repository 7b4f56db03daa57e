"""Errors as JSON a person can act on: `{"status", "error", "message", "hint"}`.

The commands' errors are translated here: `NotFound` is 404, `Conflict` 409,
`Invalid` 422. Routes raise them too for a read that finds nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from herald.api.schemas import ErrorBody
from herald.commands.errors import CommandError, Conflict, Invalid, NotFound

log = logging.getLogger("herald.api")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
}


class ApiError(Exception):
    """An error the API answers with; `hint` says what to do about it."""

    def __init__(self, status: int, message: str, hint: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.hint = hint
        self.headers = headers


def status_of(exc: CommandError) -> int:
    """The HTTP status a command's error answers with."""
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, Invalid):
        return 422
    return 400


def error_response(
    status: int, message: str, hint: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorBody(status=status, error=_CODES.get(status, "error"), message=message, hint=hint)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _where(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("query", "path", "header", "body"):
        kind, rest = parts[0], parts[1:]
        if kind == "body":
            return "the JSON body" + (f" at {'.'.join(rest)}" if rest else "")
        return f"{kind} parameter {'.'.join(rest)!r}"
    return ".".join(parts) or "the request"


def install(app: FastAPI) -> None:
    """Answer every error, including validation and unexpected ones, with an `ErrorBody`."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.hint, exc.headers)

    @app.exception_handler(CommandError)
    async def _command_error(_request: Request, exc: CommandError) -> JSONResponse:
        return error_response(status_of(exc), exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{_where(tuple(e.get('loc', ())))}: {e.get('msg', 'invalid')}" for e in exc.errors()]
        return error_response(
            422, "; ".join(problems[:5]) or "invalid request", "see the OpenAPI document at /api/v1/openapi.json"
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        hint = None
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
            hint = "the API lives under /api/v1; see /api/v1/openapi.json"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return error_response(exc.status_code, message, hint, dict(exc.headers or {}) or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the server log, never to the caller (it may hold data).
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__})", "the server log has the traceback")
