"""`herald assets list`, `herald events list|emit|replay`."""

from __future__ import annotations

from typing import Annotated

import typer

from herald.cli.common import Limit, OutputOpt, engine, json_option, settings, translated, wake
from herald.cli.output import Column, Output, console, fail, json_block, show, show_one, view, when

assets_app = typer.Typer(help="Assets.", no_args_is_help=True)
events_app = typer.Typer(help="Asset events: list them, emit one by hand, replay one.", no_args_is_help=True)


@assets_app.command("list")
def assets_list(limit: Limit = 100, output: OutputOpt = Output.table) -> None:
    """Assets and the DAGs scheduled on them."""
    from herald.store import queries

    with engine().connect() as conn:
        rows = queries.list_assets(conn, limit)
    show(rows, output, ["name", "uri", "consumers"], "Assets")


@events_app.command("list")
def events_list(
    asset: Annotated[str | None, typer.Option("--asset", help="Only events of this asset.")] = None,
    limit: Limit = 100,
    output: OutputOpt = Output.table,
) -> None:
    """Asset events, newest first, with the runs each caused (their short ids)."""
    from herald.commands.events import require_asset
    from herald.commands.runs import short_id
    from herald.store import queries

    with engine().connect() as conn, translated():
        if asset is not None:
            require_asset(conn, asset)
        rows = queries.list_events(conn, limit, asset)
    if output == Output.json:
        show(rows, output, [], "Events")
        return
    # a large extra is listed as the start of its JSON text: `herald events show ID` has it whole
    shown = [
        {
            **r,
            "extra": r["extra_preview"] or r["extra"],
            "time": when(r["timestamp"]),
            "runs": ", ".join(short_id(x) for x in r["run_ids"]),
        }
        for r in rows
    ]
    columns: list[str | Column] = [
        Column("id", cut=False, justify="right"),
        "asset",
        Column("time", "time (UTC)", cut=False),
        "source",
        "extra",
        "runs",
    ]
    show(shown, output, columns, "Events")


@events_app.command("show")
def events_show(
    event_id: Annotated[int, typer.Argument(min=1, help="The event's id.")], output: OutputOpt = Output.table
) -> None:
    """One event: where it came from, its extra whole, and the runs it caused."""
    from herald.commands.runs import short_id
    from herald.store import queries

    with engine().connect() as conn:
        found = queries.get_event(conn, event_id)
    if found is None:
        fail(f"no event {event_id}", "list events with: herald events list")
    if output == Output.json:
        show_one(found, output)
        return
    made_by = None
    if found.get("source_dag_id"):
        index = found.get("source_map_index")
        made_by = f"task {found['source_dag_id']}.{found['source_task_id']}" + (
            f"[{index}]" if index is not None and index >= 0 else ""
        )
        made_by += f" of run {found['source_run_id']}"
    fields = [
        ("asset", found["asset"]),
        ("time", when(found["timestamp"])),
        ("source", found["source"]),
        ("dedupe key", found.get("dedupe_key")),
        ("made by", made_by),
        ("aliases", ", ".join(str(a.get("name")) for a in found.get("source_aliases") or [])),
        ("runs", "\n".join(f"{short_id(r['run_id'])}  {r['dag_id']}  {r['state']}" for r in found["runs"])),
    ]
    view(f"Event {event_id}", fields, json_block("extra", found["extra"]))


@events_app.command("emit")
def events_emit(
    asset: str,
    extra: Annotated[str | None, typer.Option(help="The event's extra, a JSON object.")] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Record an event of an asset by hand; DAGs scheduled on it run."""
    from herald import notify
    from herald.commands import events

    data = json_option(extra, "--extra")
    with translated():
        event_id, _ = events.emit(
            engine(), asset, data, source=events.CLI_SOURCE, max_depth=settings().max_payload_depth
        )
    wake(notify.SCHEDULER)
    if output == Output.json:
        show_one({"id": event_id, "asset": asset, "extra": data}, output)
    else:
        console.print(f"Event {event_id} of {asset} recorded.")


@events_app.command("replay")
def events_replay(
    event_id: Annotated[int, typer.Argument(min=1, help="The event to consume again.")],
    dag: Annotated[
        list[str] | None, typer.Option("--dag", help="A DAG to run (repeatable; default: those scheduled on it).")
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Start new runs that consume a stored event again."""
    from herald import notify
    from herald.commands import events

    with translated():
        run_ids = events.replay(engine(), event_id, dag or None)
    wake(notify.SCHEDULER)
    if output == Output.json:
        show_one({"event_id": event_id, "run_ids": run_ids}, output)
    else:
        console.print(f"Event {event_id} replayed: queued {', '.join(run_ids)}.", highlight=False)
