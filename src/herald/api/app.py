"""The FastAPI application: the REST API under /api/v1, /metrics, and the web UI at /."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from sqlalchemy import Engine

from herald import __version__, notify
from herald.api import assets, dags, errors, history, metrics, runs, stats, variables, watchers
from herald.api.deps import AUTH_RESPONSES, Db, Reader
from herald.api.limits import BodyLimit
from herald.api.middleware import RefuseNul, SecurityHeaders
from herald.api.schemas import Health, WhoAmI
from herald.store.db import ping
from herald.store.storable import DEFAULT_MAX_DEPTH, SizeLimits

DESCRIPTION = """\
Herald's REST API. Every endpoint but `/api/v1/health` needs a bearer token
(`Authorization: Bearer TOKEN`): `herald tokens create --scope read|write`, or the
admin token `herald standalone` prints on first start. Reading needs the `read`
scope, writing the `write` scope (which can read too).

Lists are paginated with `limit` (1-1000, default 100) and `offset`; each page
says the `offset` of the next one in `next_offset` (null on the last page).
Errors are JSON: `{"status", "error", "message", "hint"}`.

A variable whose key names a secret (password, secret, token, api_key...) is
answered with the value `***`; `?reveal=true` returns it, with the write scope.
"""


def _no_wake(channel: str) -> None:
    """On PostgreSQL the write's own transaction sent the wake-up."""


def create_app(
    engine: Engine,
    *,
    database_url: str | None = None,
    wake: Callable[[], None] | None = None,
    max_payload_depth: int = DEFAULT_MAX_DEPTH,
    limits: SizeLimits | None = None,
) -> FastAPI:
    """The API and UI application, reading and writing the metadata database through `engine`.

    Args:
        engine: the metadata database.
        database_url: the URL the scheduler listens for wake-ups under (default: the engine's).
        wake: called after a write that the scheduler must see (default: a wake-up datagram).
        max_payload_depth: webhook events nested deeper are refused (422).
        limits: the size caps (request bodies past `limits.request` bytes are refused, 413).
    """
    app = FastAPI(
        title="Herald",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/api/v1/openapi.json",
        # FastAPI's docs pages load Swagger UI / ReDoc from a CDN: herald.api.docs
        # serves a local copy instead.
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, limit=(limits or SizeLimits()).request)
    app.add_middleware(RefuseNul)
    app.add_middleware(SecurityHeaders)  # added last: outermost, so every answer has the headers
    url = database_url or engine.url.render_as_string(hide_password=False)
    app.state.engine = engine
    app.state.wake = wake or (lambda: notify.notify(url, notify.SCHEDULER))
    # A replay or a pause reaches the triggerers with its commit on PostgreSQL (a NOTIFY
    # in the transaction); on SQLite the API sends the wake-up after the commit, else
    # they would see it only at their next re-check.
    app.state.wake_triggerers = _no_wake if notify.is_postgres(url) else functools.partial(notify.notify, url)
    app.state.max_payload_depth = max_payload_depth
    errors.install(app)

    api = APIRouter(prefix="/api/v1")

    @api.get("/health", response_model=Health, tags=["health"], summary="Health (no token needed)")
    def health() -> dict[str, Any]:
        """Whether the metadata database answers."""
        try:
            ping(engine)
            database = "ok"
        except Exception as exc:  # the health answer must not raise
            database = f"error: {type(exc).__name__}"
        return {"status": "ok" if database == "ok" else "degraded", "database": database, "version": __version__}

    @api.get("/auth/whoami", response_model=WhoAmI, tags=["health"], responses=AUTH_RESPONSES, summary="The token")
    def whoami(info: Reader) -> dict[str, Any]:
        """The calling token's name and scope (never the token)."""
        return {"name": info.name, "scope": info.scope}

    for module in (dags, runs, assets, watchers, variables, stats, history):
        api.include_router(module.router)
    app.include_router(api)

    @app.get(
        "/metrics",
        tags=["health"],
        responses={**AUTH_RESPONSES, 200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
        summary="Prometheus metrics",
        response_class=Response,
    )
    def prometheus(_: Reader, db: Db) -> Response:
        """Watcher counters, runs by state, queue lag, dead letters, event-to-run latency histograms."""
        return Response(metrics.render(db), media_type="text/plain; version=0.0.4; charset=utf-8")

    from herald.api import docs
    from herald.ui import mount

    docs.mount(app)
    mount(app)
    return app
