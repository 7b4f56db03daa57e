"""`herald ...`: every command, each printing a clear error instead of a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from herald.cli.output import Output, console, fail, show, show_one
from herald.cli.tokens import tokens_app

app = typer.Typer(
    help="Herald: DAGs of Python tasks that run the moment a message arrives.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
dags_app = typer.Typer(help="List, trigger and pause DAGs.", no_args_is_help=True)
runs_app = typer.Typer(help="List and inspect runs.", no_args_is_help=True)
tasks_app = typer.Typer(help="Task instances and their logs.", no_args_is_help=True)
assets_app = typer.Typer(help="Assets.", no_args_is_help=True)
events_app = typer.Typer(help="Asset events: list them, emit one by hand.", no_args_is_help=True)
watchers_app = typer.Typer(help="Watchers and their health.", no_args_is_help=True)
dead_app = typer.Typer(help="Messages that could not become events.", no_args_is_help=True)
db_app = typer.Typer(help="The metadata database.", no_args_is_help=True)
for sub, name in [
    (dags_app, "dags"),
    (runs_app, "runs"),
    (tasks_app, "tasks"),
    (assets_app, "assets"),
    (events_app, "events"),
    (watchers_app, "watchers"),
    (dead_app, "dead-letters"),
    (db_app, "db"),
]:
    app.add_typer(sub, name=name)
app.add_typer(tokens_app, name="tokens")

Limit = Annotated[int, typer.Option("--limit", min=1, max=100000, help="At most N rows, newest first.")]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table or json (one JSON array).")]
RUN_STATES = ("queued", "running", "success", "failed")


def _settings() -> Any:
    from pydantic import ValidationError

    from herald.config import Settings

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"HERALD_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        fail(f"invalid configuration: {problems}")


def _engine() -> Any:
    """The metadata database, migrated on first use."""
    from sqlalchemy.exc import OperationalError

    from herald.store.db import make_engine
    from herald.store.migrate import is_current, upgrade

    settings = _settings()
    try:
        engine = make_engine(settings.db_url, pool_size=0)
        if not is_current(engine):
            upgrade(engine)
    except OperationalError as exc:
        fail(f"cannot open the metadata database: {exc.orig}", "check HERALD_DATABASE_URL / HERALD_HOME", code=1)
    return engine


def _wake(*channels: str) -> None:
    from herald import notify

    notify.notify(_settings().db_url, *channels)


def _json_option(value: str | None, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        data = json.loads(value)
    except ValueError as exc:
        fail(f"{name} is not valid JSON: {exc}", f"""for example {name} '{{"key": "value"}}'""")
    if not isinstance(data, dict):
        fail(f"{name} must be a JSON object, got {type(data).__name__}", f"""for example {name} '{{"key": 1}}'""")
    return data


Port = Annotated[int | None, typer.Option(min=1, max=65535, help="Port of the API and UI.")]


def _serve(service: Any) -> None:
    import logging

    logging.basicConfig(
        level=os.environ.get("HERALD_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(service.run())


def _say(message: str) -> None:
    console.print(message, highlight=False)


def _require_postgres(command: str) -> Any:
    settings = _settings()
    if not settings.db_url.startswith("postgresql"):
        fail(
            f"herald {command} runs beside other Herald processes, which needs PostgreSQL",
            "set HERALD_DATABASE_URL=postgresql://user@host:5432/db, or run everything in one with: herald standalone",
        )
    return settings


@app.command()
def standalone(port: Port = None) -> None:
    """Run everything in one process tree: triggerer, scheduler, workers, API."""
    from herald.standalone import Standalone

    _serve(Standalone(_settings(), port, say=_say))


@app.command()
def scheduler() -> None:
    """Run a scheduler (several may run at once, on PostgreSQL); tasks go to `herald worker`."""
    from herald.standalone import SchedulerProcess

    _serve(SchedulerProcess(_require_postgres("scheduler"), say=_say))


@app.command()
def triggerer() -> None:
    """Run a triggerer: consumes the watchers whose leases it holds (several may run at once)."""
    from herald.standalone import TriggererProcess

    _serve(TriggererProcess(_require_postgres("triggerer"), say=_say))


@app.command()
def worker(
    queues: Annotated[str | None, typer.Option(help="Comma-separated task queues to serve (default: default).")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, max=512, help="Worker processes.")] = None,
) -> None:
    """Run worker processes that take tasks from the database (a Celery worker if HERALD_EXECUTOR=celery)."""
    from herald.standalone import WorkerProcess

    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    settings = _require_postgres("worker")
    if settings.executor == "celery":
        if not settings.celery_broker_url:
            fail(
                "HERALD_EXECUTOR=celery needs HERALD_CELERY_BROKER_URL",
                "for example HERALD_CELERY_BROKER_URL=redis://127.0.0.1:6379/1",
            )
        import logging

        logging.basicConfig(
            level=os.environ.get("HERALD_LOG_LEVEL", "WARNING").upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        WorkerProcess(settings, names, concurrency, say=_say).run_celery()
        return
    _serve(WorkerProcess(settings, names, concurrency, say=_say))


@app.command()
def api(port: Port = None) -> None:
    """Serve the REST API and the UI."""
    from herald.standalone import ApiProcess

    _serve(ApiProcess(_settings(), port, say=_say))


@db_app.command("migrate")
def db_migrate() -> None:
    """Create or upgrade the metadata database schema."""
    from herald.store.db import make_engine
    from herald.store.migrate import upgrade

    settings = _settings()
    upgrade(make_engine(settings.db_url, pool_size=0))
    console.print("Database is up to date.")


# -- dags ----------------------------------------------------------------------------------


@dags_app.command("list")
def dags_list(limit: Limit = 100, output: OutputOpt = Output.table) -> None:
    """DAGs, their schedules and whether they are paused."""
    from herald.store import queries

    with _engine().connect() as conn:
        rows = queries.list_dags(conn, limit)
    show(rows, output, ["dag_id", "schedule", "is_paused", "max_active_runs", "batch", "tasks"], "DAGs")


@dags_app.command("errors")
def dags_errors(limit: Limit = 100, output: OutputOpt = Output.table) -> None:
    """DAG files that failed to import, with their tracebacks."""
    from herald.store import queries

    with _engine().connect() as conn:
        rows = queries.list_import_errors(conn, limit)
    if output == Output.json or not rows:
        show(rows, output, [], "Import errors")
        return
    for row in rows:
        console.rule(f"[red]{row['fileloc']}")
        console.print(row["error"], highlight=False, markup=False)


@dags_app.command("show")
def dags_show(dag_id: str, output: OutputOpt = Output.table) -> None:
    """One DAG: schedule and task graph."""
    from herald.store import queries

    with _engine().connect() as conn:
        data = queries.get_dag(conn, dag_id)
    if data is None:
        _unknown_dag(dag_id)
        return
    show_one(data, output)


def _unknown_dag(dag_id: str) -> NoReturn:
    from herald.store import queries

    with _engine().connect() as conn:
        known = [d["dag_id"] for d in queries.list_dags(conn, 1000)]
    fail(f"no DAG {dag_id!r}", f"known DAGs: {', '.join(known) or 'none (is the DAGs folder loaded?)'}")


def _set_paused(dag_id: str, paused: bool) -> None:
    from sqlalchemy import update

    from herald import notify
    from herald.store import tables as t

    with _engine().begin() as conn:
        n = conn.execute(
            update(t.dag).where(t.dag.c.dag_id == dag_id, t.dag.c.is_active).values(is_paused=paused)
        ).rowcount
    if not n:
        _unknown_dag(dag_id)
    _wake(notify.SCHEDULER)
    console.print(f"DAG {dag_id} {'paused' if paused else 'unpaused'}.")


@dags_app.command("pause")
def dags_pause(dag_id: str) -> None:
    """Stop creating runs for a DAG (its events keep queueing)."""
    _set_paused(dag_id, True)


@dags_app.command("unpause")
def dags_unpause(dag_id: str) -> None:
    """Resume a paused DAG; events queued meanwhile make their runs."""
    _set_paused(dag_id, False)


@dags_app.command("trigger")
def dags_trigger(
    dag_id: str,
    conf: Annotated[str | None, typer.Option(help="Run parameters as a JSON object.")] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Queue a manual run of a DAG."""
    from sqlalchemy import select

    from herald import notify
    from herald.scheduler.scheduler import trigger_run
    from herald.store import tables as t

    data = _json_option(conf, "--conf")
    with _engine().begin() as conn:
        exists = conn.execute(select(t.dag.c.dag_id).where(t.dag.c.dag_id == dag_id, t.dag.c.is_active)).first()
        if exists is None:
            conn.rollback()
            _unknown_dag(dag_id)
        run_id = trigger_run(conn, dag_id, data)
    _wake(notify.SCHEDULER)
    if output == Output.json:
        show_one({"run_id": run_id, "dag_id": dag_id, "state": "queued", "conf": data}, output)
    else:
        console.print(f"Queued run {run_id}")


# -- runs and tasks ------------------------------------------------------------------------


@runs_app.command("list")
def runs_list(
    dag: Annotated[str | None, typer.Option("--dag", help="Only runs of this DAG.")] = None,
    state: Annotated[str | None, typer.Option("--state", help="queued, running, success or failed.")] = None,
    limit: Limit = 100,
    output: OutputOpt = Output.table,
) -> None:
    """Runs, newest first, with the events each consumed."""
    from herald.store import queries

    if state is not None and state not in RUN_STATES:
        fail(f"unknown state {state!r}", f"use one of: {', '.join(RUN_STATES)}")
    with _engine().connect() as conn:
        rows = queries.list_runs(conn, limit, dag, state)
    show(rows, output, ["run_id", "dag_id", "state", "run_type", "queued_at", "ended_at", "event_ids"], "Runs")


@runs_app.command("show")
def runs_show(run_id: str, output: OutputOpt = Output.table) -> None:
    """One run: its tasks, their states and results."""
    from herald.store import queries

    with _engine().connect() as conn:
        data = queries.get_run(conn, run_id)
    if data is None:
        fail(f"no run {run_id!r}", "list runs with: herald runs list")
    show_one(data, output)


@tasks_app.command("logs")
def tasks_logs(run_id: str, task_id: str, output: OutputOpt = Output.table) -> None:
    """What a task printed (stdout, stderr, logging), and its error."""
    from herald.store import queries

    with _engine().connect() as conn:
        data = queries.task_log(conn, run_id, task_id)
        if data is None:
            run = queries.get_run(conn, run_id)
    if data is None:
        if run is None:
            fail(f"no run {run_id!r}", "list runs with: herald runs list")
        fail(
            f"run {run_id} has no task {task_id!r}",
            f"its tasks: {', '.join(x['task_id'] for x in run['tasks']) or 'none yet'}",
        )
    if output == Output.json:
        show_one(data, output)
        return
    console.print(f"[bold]{task_id}[/] ({data['state']}, try {data['try_number']})", highlight=False)
    sys.stdout.write(data["log"])
    if data["error"]:
        console.print(f"[red]{data['error']}[/]", highlight=False, markup=False)


# -- assets, events, watchers, dead letters ---------------------------------------------


@assets_app.command("list")
def assets_list(limit: Limit = 100, output: OutputOpt = Output.table) -> None:
    """Assets and the DAGs scheduled on them."""
    from herald.store import queries

    with _engine().connect() as conn:
        rows = queries.list_assets(conn, limit)
    show(rows, output, ["name", "uri", "consumers"], "Assets")


@events_app.command("list")
def events_list(
    asset: Annotated[str | None, typer.Option("--asset", help="Only events of this asset.")] = None,
    limit: Limit = 100,
    output: OutputOpt = Output.table,
) -> None:
    """Asset events, newest first, with the runs each caused."""
    from herald.store import queries

    with _engine().connect() as conn:
        rows = queries.list_events(conn, limit, asset)
    show(rows, output, ["id", "asset", "timestamp", "source", "extra", "run_ids"], "Events")


@events_app.command("emit")
def events_emit(
    asset: str,
    extra: Annotated[str | None, typer.Option(help="The event's extra, a JSON object.")] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Record an event of an asset by hand; DAGs scheduled on it run."""
    from sqlalchemy import select

    from herald import notify
    from herald.scheduler.scheduler import consumers_from_db
    from herald.store import tables as t
    from herald.store.types import utcnow
    from herald.triggerer.ingest import insert_events

    data = _json_option(extra, "--extra")
    with _engine().begin() as conn:
        asset_id = conn.execute(select(t.asset.c.id).where(t.asset.c.name == asset)).scalar()
        if asset_id is None:
            known = list(conn.execute(select(t.asset.c.name).order_by(t.asset.c.name)).scalars())
            conn.rollback()
            fail(f"no asset {asset!r}", f"known assets: {', '.join(known) or 'none'}")
        now = utcnow()
        new = insert_events(
            conn,
            [{"asset_id": asset_id, "source": "cli", "dedupe_key": None, "extra": data, "timestamp": now}],
            consumers_from_db(conn, int(asset_id)),
            now,
        )
    _wake(notify.SCHEDULER)
    event_id = new[0][0]
    if output == Output.json:
        show_one({"id": event_id, "asset": asset, "extra": data}, output)
    else:
        console.print(f"Event {event_id} of {asset} recorded.")


@watchers_app.command("list")
def watchers_list(limit: Limit = 100, output: OutputOpt = Output.table) -> None:
    """Watchers: state, last message, counters, lag and last error."""
    from herald.store import queries

    with _engine().connect() as conn:
        rows = queries.list_watchers(conn, limit)
    show(
        rows,
        output,
        [
            "asset",
            "name",
            "url",
            "state",
            "received",
            "events",
            "skipped",
            "dead_lettered",
            "lag",
            "last_message_at",
            "last_error",
        ],
        "Watchers",
    )


@dead_app.command("list")
def dead_letters_list(limit: Limit = 100, output: OutputOpt = Output.table) -> None:
    """Messages that could not become events, with the reason."""
    from herald.store import queries

    with _engine().connect() as conn:
        rows = queries.list_dead_letters(conn, limit)
    show(rows, output, ["id", "source", "error", "body", "created_at"], "Dead letters")


@dead_app.command("replay")
def dead_letters_replay(dead_letter_id: int) -> None:
    """Feed a dead letter back through its watcher's trigger (after fixing the DAG file)."""
    from herald.triggerer.replay import REPLAY, request_replay

    problem = request_replay(_engine(), dead_letter_id)
    if problem is not None:
        fail(problem, "list dead letters with: herald dead-letters list")
    _wake(REPLAY)
    console.print(f"Dead letter {dead_letter_id} will be replayed by the triggerer holding its watcher.")


# -- publish -------------------------------------------------------------------------------


@app.command()
def publish(
    url: Annotated[str, typer.Argument(help="Queue URL, e.g. local://orders or redis://127.0.0.1:6379/0?stream=s")],
    body: Annotated[str, typer.Argument(help="The message body as text, or @FILE to send a file's bytes.")],
    header: Annotated[list[str] | None, typer.Option("--header", "-H", help="KEY=VALUE, repeatable.")] = None,
    count: Annotated[int, typer.Option(min=1, help="Send the body this many times.")] = 1,
) -> None:
    """Send a message to any queue Herald can watch."""
    from herald.triggers.registry import UnknownSchemeError, scheme_of
    from herald.triggers.urls import mask_url

    try:
        scheme_of(url)
    except UnknownSchemeError as exc:
        fail(str(exc))
    if body.startswith("@"):
        path = Path(body[1:])
        if not path.is_file():
            fail(f"no file {str(path)!r} to send", "use @PATH to an existing file, or pass the body as text")
        data = path.read_bytes()
    else:
        data = body.encode("utf-8")
    headers: dict[str, str] = {}
    for item in header or []:
        if "=" not in item:
            fail(f"header {item!r} is not KEY=VALUE")
        key, value = item.split("=", 1)
        headers[key] = value
    if url.startswith("local:"):
        from herald.publishing import local_publish
        from herald.triggers.local import queue_name

        _engine()
        try:
            local_publish(queue_name(url), [data] * count, headers, settings=_settings())
        except ValueError as exc:
            fail(str(exc))
    else:
        from herald.publishing import publish as send

        for _ in range(count):
            try:
                send(url, data, headers)
            except ImportError as exc:
                fail(str(exc))
            except Exception as exc:  # any broker client's error: say it, no traceback
                fail(f"could not publish to {mask_url(url)}: {type(exc).__name__}: {exc}", code=1)
    console.print(f"Published {count} message(s) to {mask_url(url)}.", highlight=False)


def main() -> None:
    """Console entry point: no traceback reaches the user unless HERALD_DEBUG is set."""
    try:
        app()
    except SystemExit:
        raise
    except Exception as exc:
        if os.environ.get("HERALD_DEBUG"):
            raise
        from herald.cli.output import err_console

        err_console.print("[bold red]error:[/] ", end="")
        err_console.print(f"{type(exc).__name__}: {exc}", highlight=False, markup=False)
        err_console.print("[dim]set HERALD_DEBUG=1 to see the traceback[/]")
        sys.exit(1)
