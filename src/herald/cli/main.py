"""`herald ...`: the command groups, each in a module of its own, registered here.

Each command module imports `herald.cli.common` (settings, database, options,
error translation), never this module, so nothing imports in a circle.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Annotated

import typer

from herald.cli import processes
from herald.cli.dags import dags_app
from herald.cli.db import db_app
from herald.cli.events import assets_app, events_app
from herald.cli.port import port
from herald.cli.publish import publish
from herald.cli.runs import runs_app, tasks_app
from herald.cli.status import status
from herald.cli.tokens import tokens_app
from herald.cli.triggerers import triggerers_app
from herald.cli.variables import variables_app
from herald.cli.watchers import alerts_app, dead_app, watchers_app

app = typer.Typer(
    help="Herald: DAGs of Python tasks that run the moment a message arrives.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from herald import __version__

        typer.echo(f"herald {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print Herald's version and exit."),
    ] = False,
) -> None:
    """Herald: DAGs of Python tasks that run the moment a message arrives."""


for command in (processes.standalone, processes.scheduler, processes.triggerer, processes.worker, processes.api):
    app.command()(command)
app.command()(publish)
app.command()(status)
app.command("port")(port)

for sub, name in [
    (dags_app, "dags"),
    (runs_app, "runs"),
    (tasks_app, "tasks"),
    (assets_app, "assets"),
    (events_app, "events"),
    (watchers_app, "watchers"),
    (dead_app, "dead-letters"),
    (triggerers_app, "triggerers"),
    (alerts_app, "alerts"),
    (db_app, "db"),
    (tokens_app, "tokens"),
    (variables_app, "variables"),
]:
    app.add_typer(sub, name=name)


def main() -> None:
    """Console entry point: no traceback reaches the user unless HERALD_DEBUG is set."""
    try:
        _main()
    finally:
        # Everything is about to go: the interpreter's last garbage collection would walk
        # every object of every imported module first (a quarter of a short command's CPU).
        gc.freeze()


def _main() -> None:
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
