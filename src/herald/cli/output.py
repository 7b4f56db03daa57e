"""Printing listings as Rich tables or as one JSON array, and errors without tracebacks."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


class Output(StrEnum):
    """How a listing is printed."""

    table = "table"
    json = "json"


def fail(message: str, hint: str | None = None, code: int = 2) -> NoReturn:
    """Print what is wrong (and how to fix it) and exit; 2 for wrong arguments."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    if hint:
        err_console.print(f"[dim]hint:[/] {hint}", highlight=False)
    raise typer.Exit(code)


def _cell(value: Any, width: int = 60) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        value = json.dumps(value, default=str)
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def show(rows: Sequence[dict[str, Any]], output: Output, columns: Sequence[str], title: str) -> None:
    """Print `rows` as a table of `columns`, or every field as JSON."""
    if output == Output.json:
        sys.stdout.write(json.dumps(list(rows), default=str, indent=2) + "\n")
        return
    if not rows:
        console.print(f"[dim]No {title.lower()}.[/]")
        return
    table = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[_cell(row.get(c)) for c in columns])
    console.print(table)


def show_one(data: dict[str, Any], output: Output) -> None:
    """Print one object as JSON (for `show` commands both formats are readable JSON)."""
    if output == Output.json:
        sys.stdout.write(json.dumps(data, default=str, indent=2) + "\n")
    else:
        console.print_json(json.dumps(data, default=str))
