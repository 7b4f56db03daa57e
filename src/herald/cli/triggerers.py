"""`herald triggerers list`: the running triggerers and the watchers each one holds."""

from __future__ import annotations

import typer

from herald.cli.common import Limit, OutputOpt, engine
from herald.cli.output import Output, show

triggerers_app = typer.Typer(help="Triggerers and the watchers they share.", no_args_is_help=True)


@triggerers_app.command("list")
def triggerers_list(limit: Limit = 100, output: OutputOpt = Output.table) -> None:
    """Triggerers: heartbeat, the watchers whose lease each holds, and those it reads (shared ones too)."""
    from herald.store import queries
    from herald.store.triggerers import LEASE_TTL

    with engine().connect() as conn:
        rows = queries.list_triggerers(conn, LEASE_TTL, limit)
    if output == Output.table:
        rows = [
            {
                **r,
                "leases": len(r["leases"]),
                "holds": ", ".join(r["leases"]),
                "also_reads": ", ".join(sorted(set(r["consuming"]) - set(r["leases"]))),
            }
            for r in rows
        ]
    columns = ["name", "alive", "heartbeat_at", "received", "leases", "holds", "also_reads"]
    show(rows, output, columns, "Triggerers")
