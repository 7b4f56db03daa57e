"""The long-running processes (`standalone`, `scheduler`, `triggerer`, `worker`, `api`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated, Any

import typer

from herald.cli.common import settings
from herald.cli.output import console, fail

Port = Annotated[int | None, typer.Option(min=1, max=65535, help="Port of the API and UI.")]


def _log_setup() -> None:
    logging.basicConfig(
        level=settings().log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _serve(service: Any) -> None:
    _log_setup()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(service.run())


def _say(message: str) -> None:
    console.print(message, highlight=False)


def _require_postgres(command: str, instead: str = "run everything in one with: herald standalone") -> Any:
    found = settings()
    if not found.db_url.startswith("postgresql"):
        fail(
            f"herald {command} runs beside other Herald processes, which needs PostgreSQL",
            f"set HERALD_DATABASE_URL=postgresql://user@host:5432/db, or {instead}",
        )
    return found


def _require_celery_broker(found: Any) -> None:
    if not found.celery_broker_url:
        fail(
            "HERALD_EXECUTOR=celery needs HERALD_CELERY_BROKER_URL",
            "for example HERALD_CELERY_BROKER_URL=redis://127.0.0.1:6379/1",
        )


def standalone(port: Port = None) -> None:
    """Run everything in one process tree: triggerer, scheduler, workers, API."""
    from herald.standalone import Standalone

    found = settings()
    if found.executor == "celery":
        # Celery workers are other processes: they share the database, which needs PostgreSQL.
        found = _require_postgres(
            "standalone with HERALD_EXECUTOR=celery", "unset HERALD_EXECUTOR to run tasks in standalone's own workers"
        )
        _require_celery_broker(found)
    _serve(Standalone(found, port, say=_say))


def scheduler() -> None:
    """Run a scheduler (several may run at once, on PostgreSQL); tasks go to `herald worker`."""
    from herald.standalone import SchedulerProcess

    _serve(SchedulerProcess(_require_postgres("scheduler"), say=_say))


def triggerer() -> None:
    """Run a triggerer: consumes the watchers whose leases it holds (several may run at once)."""
    from herald.standalone import TriggererProcess

    _serve(TriggererProcess(_require_postgres("triggerer"), say=_say))


def worker(
    queues: Annotated[str | None, typer.Option(help="Comma-separated task queues to serve (default: default).")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, max=512, help="Worker processes.")] = None,
) -> None:
    """Run worker processes that take tasks from the database (a Celery worker if HERALD_EXECUTOR=celery)."""
    from herald.standalone import WorkerProcess

    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    found = _require_postgres("worker")
    if found.executor == "celery":
        _require_celery_broker(found)
        _log_setup()
        WorkerProcess(found, names, concurrency, say=_say).run_celery()
        return
    _serve(WorkerProcess(found, names, concurrency, say=_say))


def api(port: Port = None) -> None:
    """Serve the REST API and the UI."""
    from herald.standalone import ApiProcess

    _serve(ApiProcess(settings(), port, say=_say))
