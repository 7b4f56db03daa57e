"""`herald port SRC_DIR DEST_DIR [--check]`: port an Airflow DAG folder to Herald."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def port(
    src: Annotated[Path, typer.Argument(help="The Airflow DAG folder.", exists=True, file_okay=False)],
    dest: Annotated[
        Path | None, typer.Argument(help="Where to write the ported folder (not needed with --check).")
    ] = None,
    check: Annotated[bool, typer.Option("--check", help="Only report; write nothing.")] = False,
) -> None:
    """Copy an Airflow DAG folder with `from airflow... import X` rewritten to `from herald import X`.

    Then import every file and print, per file, `ok` or each construct Herald does not
    support with file:line and the nearest replacement. Exit status 0 when everything ports.
    """
    from herald.porting import port_folder

    if dest is None and not check:
        typer.echo("error: give DEST_DIR, or --check to only report", err=True)
        raise typer.Exit(2)
    try:
        reports = port_folder(src, None if check else dest)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for report in reports:
        for line in report.lines(str(src / report.path)):
            typer.echo(line)
    failed = [r for r in reports if not r.ok]
    summary = f"{len(reports) - len(failed)} of {len(reports)} file(s) port"
    if not check and dest is not None:
        summary += f" (written to {dest})"
    typer.echo(summary)
    if failed:
        raise typer.Exit(1)
