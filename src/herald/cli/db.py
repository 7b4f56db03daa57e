"""`herald db migrate|clean`: the metadata database's schema, and deleting what is old."""

from __future__ import annotations

from typing import Annotated

import typer

from herald.cli.common import OutputOpt, engine, settings, translated
from herald.cli.output import Output, console, show

db_app = typer.Typer(help="The metadata database.", no_args_is_help=True)

KINDS = {
    "runs": "finished runs",
    "tries": "their task tries (logs, results, XComs)",
    "events": "events no run or waiting DAG needs",
    "dead_letters": "replayed dead letters",
    "watcher_samples": "watchers' health samples",
}


@db_app.command("migrate")
def db_migrate() -> None:
    """Create or upgrade the metadata database schema."""
    from herald.store.db import make_engine
    from herald.store.migrate import upgrade

    upgrade(make_engine(settings().db_url, pool_size=0))
    console.print("Database is up to date.")


@db_app.command("clean")
def db_clean(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Delete what ended longer ago than this: 30d, 12h, 30m.")
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be deleted, per kind.")] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Delete finished runs (with their tries and logs), consumed events and replayed dead letters older than a cut-off.

    Nothing an unfinished run or a waiting DAG needs is deleted.

    Deletes go in short batches (HERALD_RETENTION_BATCH_SIZE rows): Herald keeps running.

    HERALD_RETENTION=30d does the same on a schedule.
    """
    from herald.commands import retention

    with translated():
        age = retention.older_than(older_than)
        counts = retention.clean(engine(), age, dry_run=dry_run, batch_size=settings().retention_batch_size)
    verb = "would delete" if dry_run else "deleted"
    rows = [{"kind": kind, "what": KINDS[kind], verb: n} for kind, n in counts.items()]
    show(rows, output, ["kind", "what", verb], f"Older than {older_than}: {verb}")
