"""Printing listings as Rich tables or as one JSON array, one object as a panel, and errors without tracebacks."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NoReturn

import typer
from rich import box
from rich.console import Console, JustifyMethod, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


class Output(StrEnum):
    """How a listing is printed."""

    table = "table"
    json = "json"


#: terminal escape sequences: CSI (colours, cursor moves, `ESC[2J`), OSC (window title,
#: hyperlinks; ended by BEL or ESC backslash), and two-character escapes
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?|\x9b[0-?]*[ -/]*[@-~]"
)
#: other control characters but tab and newline (a carriage return could hide a line)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain_text(text: str) -> str:
    """`text` (a task's log) safe to print on a terminal: escape sequences and control characters removed.

    A task's output is anyone's bytes: printed raw, it could clear the screen, rewrite
    the window title or hide lines behind carriage returns.
    """
    return _CONTROLS.sub("", _ESCAPES.sub("", text.replace("\r\n", "\n")))


def to_json(value: Any) -> str:
    """`value` as strict JSON (what `-o json` prints): a NaN or Infinity is written as its name in text."""
    try:
        return json.dumps(value, default=str, indent=2, allow_nan=False)
    except ValueError:
        from herald.store.storable import displayable

        return json.dumps(displayable(json.loads(json.dumps(value, default=str))), default=str, indent=2)


def fail(message: str, hint: str | None = None, code: int = 2) -> NoReturn:
    """Print what is wrong (and how to fix it) and exit; 2 for wrong arguments.

    The message and hint are printed as written: a name holding `[bold]` is text, never markup.
    """
    err_console.print(Text.assemble(("error:", "bold red"), " ", message))
    if hint:
        err_console.print(Text.assemble(("hint:", "dim"), " ", hint))
    raise typer.Exit(code)


def _cell(value: Any, width: int = 60) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        value = json.dumps(value, default=str)
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass(frozen=True)
class Column:
    """A table column: the row's field, its heading, and whether it may be cut to fit (`…`)."""

    field: str
    heading: str | None = None
    #: an id is never cut: a cut id cannot be typed back
    cut: bool = True
    justify: JustifyMethod = "left"


def show(rows: Sequence[dict[str, Any]], output: Output, columns: Sequence[str | Column], title: str) -> None:
    """Print `rows` as a table of `columns` (one line each, long cells cut with `…`), or every field as JSON."""
    if output == Output.json:
        sys.stdout.write(to_json(list(rows)) + "\n")
        return
    if not rows:
        console.print(f"[dim]No {title.lower()}.[/]")
        return
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    specs = [c if isinstance(c, Column) else Column(c) for c in columns]
    for spec in specs:
        # Rich narrows the wrappable columns to fit the terminal; each cell stays one line,
        # cut with "…". An id column is not wrappable: it keeps its width.
        table.add_column(spec.heading or spec.field, no_wrap=not spec.cut, justify=spec.justify)
    for row in rows:
        table.add_row(*[Text(_cell(row.get(c.field)), no_wrap=True, overflow="ellipsis") for c in specs])
    console.print(table)


def show_one(data: dict[str, Any], output: Output) -> None:
    """Print one object as JSON (for `show` commands both formats are readable JSON)."""
    if output == Output.json:
        sys.stdout.write(to_json(data) + "\n")
    else:
        console.print_json(to_json(data))


def part_table(title: str, headings: Sequence[str]) -> Table:
    """A table inside a view (a run's tasks, a DAG's tasks), drawn as the listings are; long cells wrap."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for heading in headings:
        table.add_column(heading, overflow="fold")
    return table


def view(title: str, fields: Sequence[tuple[str, Any]], *parts: RenderableType) -> None:
    """Print one object for a person: a panel of `fields` (label, value; empty values left out), then `parts`."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in fields:
        if value is None or value == "" or value == [] or value == {}:
            continue
        grid.add_row(label, value if isinstance(value, Text) else Text(_text(value)))
    console.print(Panel(grid, title=Text(title), title_align="left", expand=False))
    for part in parts:
        console.print(part)


def _text(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def json_block(title: str, value: Any) -> RenderableType:
    """A JSON value, indented and coloured, under a heading."""
    from rich.json import JSON

    return Panel(JSON(to_json(value)), title=Text(title), title_align="left", expand=False)


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 time from the database's text (None stays None)."""
    if not value:
        return None
    return datetime.fromisoformat(value)


def duration(start: str | None, end: str | None, now: datetime | None = None) -> str:
    """How long from `start` to `end` (or to now, when not ended): `0.42s`, `12.3s`, `4m 05s`, `2h 03m`, `3d 04h`.

    Empty when it never started.
    """
    began = parse_time(start)
    if began is None:
        return ""
    ended = parse_time(end) or now or datetime.now(UTC)
    seconds = max(0.0, (ended - began).total_seconds())
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def when(value: str | None) -> str:
    """A stored time as a person reads it in a table: `2026-11-21 12:00:03` (UTC)."""
    found = parse_time(value)
    if found is None:
        return ""
    return found.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
