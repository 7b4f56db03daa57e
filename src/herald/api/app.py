"""The FastAPI application: health for now; the full API builds on it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine, text

from herald import __version__


def create_app(engine: Engine) -> FastAPI:
    """The API and UI application, reading the metadata database through `engine`."""
    app = FastAPI(
        title="Herald",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )

    @app.get("/api/v1/health")
    def health() -> dict[str, Any]:
        """Whether the metadata database answers."""
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            database = "ok"
        except Exception as exc:  # the health answer must not raise
            database = f"error: {type(exc).__name__}"
        return {"status": "ok" if database == "ok" else "degraded", "database": database, "version": __version__}

    return app
