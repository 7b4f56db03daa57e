"""What every command group shares: settings, the database, wake-ups, options, and error translation.

The command modules import this one, never `cli/main.py` (which imports them all).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from herald.cli.output import Output, fail
from herald.commands.errors import CommandError, Conflict

Limit = Annotated[int, typer.Option("--limit", min=1, max=100000, help="At most N rows, newest first.")]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table or json (one JSON array).")]

#: exit status of a refused command: 2 when an argument names nothing or is malformed (as for
#: every wrong argument), 1 when the arguments are right but the object's state refuses
CONFLICT_EXIT = 1
ARGUMENT_EXIT = 2


def settings() -> Any:
    """Herald's settings, or a clear message naming the variable that is wrong."""
    from pydantic import ValidationError

    from herald.config import Settings

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"HERALD_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        fail(f"invalid configuration: {problems}")


def missing_database(db_url: str) -> str | None:
    """The path of the SQLite database `db_url` names when that file does not exist, else None."""
    from sqlalchemy.engine import make_url

    parsed = make_url(db_url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    if parsed.database.startswith("file:"):
        return None
    return None if os.path.exists(parsed.database) else os.path.abspath(parsed.database)


def engine() -> Any:
    """The metadata database, its schema brought up to date; never a new SQLite database.

    A command run from the wrong folder, or with HERALD_HOME unset, would otherwise
    create an empty database of its own and report "no runs" (or publish where no
    watcher listens). Only `herald db migrate` and the processes create one.
    """
    from sqlalchemy.exc import OperationalError

    from herald.store.db import make_engine
    from herald.store.migrate import is_current, upgrade

    found = settings()
    missing = missing_database(found.db_url)
    if missing is not None:
        fail(
            f"there is no Herald database at {missing}",
            "set HERALD_HOME (or HERALD_DATABASE_URL) to the Herald you mean; `herald status` shows what is used. "
            "To make a new one: herald standalone, or herald db migrate",
            code=1,
        )
    try:
        db = make_engine(found.db_url, pool_size=0)
        if not is_current(db):
            upgrade(db)
    except OperationalError as exc:
        fail(f"cannot open the metadata database: {exc.orig}", "check HERALD_DATABASE_URL / HERALD_HOME", code=1)
    return db


def wake(*channels: str) -> None:
    """Wake the processes listening on `channels` after a commit."""
    from herald import notify

    notify.notify(settings().db_url, *channels)


def json_option(value: str | None, name: str) -> dict[str, Any]:
    """A `--conf` / `--extra` option as a JSON object, or exit 2 saying what is wrong with it."""
    if value is None:
        return {}
    try:
        data = json.loads(value)
    except ValueError as exc:
        fail(f"{name} is not valid JSON: {exc}", f"""for example {name} '{{"key": "value"}}'""")
    if not isinstance(data, dict):
        fail(f"{name} must be a JSON object, got {type(data).__name__}", f"""for example {name} '{{"key": 1}}'""")
    return data


def exit_code(exc: CommandError) -> int:
    """The exit status of a command's error."""
    return CONFLICT_EXIT if isinstance(exc, Conflict) else ARGUMENT_EXIT


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Turn a command's error into its message, its hint and an exit status, never a traceback."""
    try:
        yield
    except CommandError as exc:
        fail(exc.message, exc.hint, code=exit_code(exc))


def run_id(text: str) -> str:
    """The run id `text` names (the id, a unique prefix, or the short id listings show), or exit 2 saying why."""
    from herald.commands import runs

    with translated():
        return runs.resolve(engine(), text)
