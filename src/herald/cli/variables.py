"""`herald variables list|get|set|delete`: the variables DAGs read with `Variable.get`.

Listings show a secret variable's value (its key names a password, token,
api_key...) as `***`; `get` prints the stored value, since it is asked for by key.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from herald.cli.common import Limit, OutputOpt, engine, translated
from herald.cli.output import Output, console, fail, show

variables_app = typer.Typer(help="Variables that DAGs read with Variable.get.", no_args_is_help=True)


@variables_app.command("list")
def variables_list(limit: Limit = 100, output: OutputOpt = Output.table) -> None:
    """Variables by key; the values of secret ones are shown as ***."""
    from herald.commands import variables
    from herald.store.variables import masked

    rows: list[dict[str, Any]] = [
        {"key": r.key, "value": r.value, "description": r.description, "updated_at": r.updated_at.isoformat()}
        for r in map(masked, variables.list_all(engine(), limit))
    ]
    show(rows, output, ["key", "value", "description", "updated_at"], "Variables")


@variables_app.command("get")
def variables_get(key: str) -> None:
    """Print a variable's value; exit 1 when there is none (as `git config --get` does)."""
    from herald.commands import variables
    from herald.commands.errors import NotFound

    try:
        row = variables.get(engine(), key)
    except NotFound as exc:
        fail(exc.message, exc.hint, code=1)
    sys.stdout.write(row.value + "\n")


@variables_app.command("set")
def variables_set(
    key: str,
    value: str,
    description: Annotated[str | None, typer.Option("--description", help="What the variable is for.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Refuse a value that is not valid JSON.")] = False,
) -> None:
    """Create or replace a variable."""
    from herald.commands import variables

    with translated():
        variables.set_value(engine(), key, value, description, as_json=as_json)
    console.print(f"Variable {key} set.", highlight=False, markup=False)


@variables_app.command("delete")
def variables_delete(key: str) -> None:
    """Delete a variable."""
    from herald.commands import variables

    with translated():
        variables.delete(engine(), key)
    console.print(f"Variable {key} deleted.", highlight=False, markup=False)
