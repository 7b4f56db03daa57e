"""What every route needs: the database, the caller's token and scope, a way to wake the scheduler."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection, Engine

from herald.api.errors import ApiError
from herald.api.schemas import ErrorBody
from herald.store import tokens

bearer = HTTPBearer(
    auto_error=False,
    description="A token from `herald tokens create --scope read|write` (or the admin token `herald standalone` "
    "prints on first start), sent as `Authorization: Bearer TOKEN`.",
)

#: documented on every route that needs a token
AUTH_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorBody, "description": "No token, or an unknown one."},
    403: {"model": ErrorBody, "description": "The token's scope does not allow this."},
    422: {"model": ErrorBody, "description": "A parameter or the body is invalid."},
}
NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"model": ErrorBody, "description": "No such object."}}
CONFLICT: dict[int | str, dict[str, object]] = {
    409: {"model": ErrorBody, "description": "The object is not in a state that allows this."}
}


def engine(request: Request) -> Engine:
    """The metadata database engine of this app."""
    found: Engine = request.app.state.engine
    return found


def read_conn(db: Annotated[Engine, Depends(engine)]) -> Iterator[Connection]:
    """A connection for one request's reads."""
    with db.connect() as conn:
        yield conn


def waker(request: Request) -> Callable[[], None]:
    """Wakes the scheduler after a write."""
    wake: Callable[[], None] = request.app.state.wake
    return wake


def triggerer_waker(request: Request) -> Callable[[str], None]:
    """Wakes the triggerers on a channel (`notify.REPLAY`, `notify.WATCHERS`) after a write."""
    wake: Callable[[str], None] = request.app.state.wake_triggerers
    return wake


def caller(
    db: Annotated[Engine, Depends(engine)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> tokens.TokenInfo:
    """The calling token, or 401."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise ApiError(
            401,
            "this endpoint needs a token",
            "send `Authorization: Bearer TOKEN`; create one with: herald tokens create --scope read",
            challenge,
        )
    with db.connect() as conn:
        info = tokens.lookup(conn, credentials.credentials)
    if info is None:
        raise ApiError(
            401, "unknown or revoked token", "check the token; list tokens with: herald tokens list", challenge
        )
    return info


def reader(info: Annotated[tokens.TokenInfo, Depends(caller)]) -> tokens.TokenInfo:
    """A token that may read (every scope)."""
    return info


def writer(info: Annotated[tokens.TokenInfo, Depends(caller)]) -> tokens.TokenInfo:
    """A token that may write, or 403."""
    if not info.allows("write"):
        raise ApiError(
            403,
            f"token {info.name!r} has the {info.scope} scope; this endpoint needs the write scope",
            "create a write token with: herald tokens create --scope write",
        )
    return info


Conn = Annotated[Connection, Depends(read_conn)]
Reader = Annotated[tokens.TokenInfo, Depends(reader)]
Writer = Annotated[tokens.TokenInfo, Depends(writer)]
Wake = Annotated[Callable[[], None], Depends(waker)]
WakeTriggerers = Annotated[Callable[[str], None], Depends(triggerer_waker)]
Db = Annotated[Engine, Depends(engine)]
