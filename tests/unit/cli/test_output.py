"""cli/output.py: durations as people read them, and tables that fit the terminal one line a row."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rich.console import Console

from herald.cli import output
from herald.cli.output import Column, Output, duration, show


@pytest.mark.parametrize(
    ("start", "end", "shown"),
    [
        ("2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00.420000+00:00", "0.42s"),
        ("2026-01-01T00:00:00+00:00", "2026-01-01T00:00:12.340000+00:00", "12.3s"),
        ("2026-01-01T00:00:00+00:00", "2026-01-01T00:04:05+00:00", "4m 05s"),
        ("2026-01-01T00:00:00+00:00", "2026-01-01T02:03:00+00:00", "2h 03m"),
        ("2026-01-01T00:00:00+00:00", "2026-01-04T04:00:00+00:00", "3d 04h"),
        (None, None, ""),
    ],
)
def test_durations(start: str | None, end: str | None, shown: str) -> None:
    assert duration(start, end) == shown


def test_a_run_not_ended_lasts_until_now() -> None:
    now = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert duration("2026-01-01T00:00:00+00:00", None, now) == "1m 00s"


def test_a_table_fits_the_width_one_line_a_row_and_never_cuts_an_id(monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console(width=60, record=True, soft_wrap=True)
    monkeypatch.setattr(output, "console", console)
    rows = [{"run": "1a2b3c4d", "dag": "a_rather_long_dag_name_" * 3, "note": "[bold]text[/bold] " * 5}]
    show(rows, Output.table, [Column("run", cut=False), "dag", "note"], "Runs")
    lines = console.export_text().splitlines()
    assert all(len(line.rstrip()) <= 60 for line in lines)
    [row] = [line for line in lines if "1a2b3c4d" in line]
    assert "…" in row and "[bold]text" in row  # cut to fit, and markup in a cell is text
    assert len(lines) == 4  # title, headings, rule, the one row
