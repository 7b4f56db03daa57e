"""`herald watchers list|pause|resume`, `herald dead-letters list|show|replay` and `herald alerts list`."""

from __future__ import annotations

from typing import Annotated

import typer

from herald.cli.common import Limit, OutputOpt, engine, translated, wake
from herald.cli.output import Column, Output, console, fail, show, show_one, when

watchers_app = typer.Typer(help="Watchers: their health; pause and resume one.", no_args_is_help=True)
dead_app = typer.Typer(help="Messages that could not become events.", no_args_is_help=True)
alerts_app = typer.Typer(help="Alerts the schedulers sent (HERALD_ALERT_*).", no_args_is_help=True)


@alerts_app.command("list")
def alerts_list(
    state: Annotated[str | None, typer.Option("--state", help="firing or resolved.")] = None,
    limit: Limit = 100,
    output: OutputOpt = Output.table,
) -> None:
    """Alerts that fired, newest first: watchers down or lagging, failing DAGs, latency."""
    from herald.store import queries

    if state is not None and state not in ("firing", "resolved"):
        fail(f"unknown state {state!r}", "use one of: firing, resolved")
    with engine().connect() as conn:
        rows = queries.list_alerts(conn, limit, state)
    show(rows, output, ["key", "episode", "state", "summary", "fired_at", "resolved_at"], "Alerts")


WatcherId = Annotated[int, typer.Argument(min=1, help="The watcher's id (herald watchers list).")]


@watchers_app.command("list")
def watchers_list(limit: Limit = 100, output: OutputOpt = Output.table) -> None:
    """Watchers: state, counters, lag, last message and last error (JSON has every field)."""
    from herald.store import queries

    with engine().connect() as conn:
        rows = queries.list_watchers(conn, limit)
    if output == Output.json:
        show(rows, output, [], "Watchers")
        return
    shown = [{**r, "watcher": f"{r['asset']}/{r['name']}", "last message": when(r["last_message_at"])} for r in rows]
    columns: list[str | Column] = [
        Column("id", cut=False, justify="right"),
        "watcher",
        "url",
        Column("state", cut=False),
        Column("received", "in", cut=False, justify="right"),
        Column("events", cut=False, justify="right"),
        Column("dead_lettered", "dead", cut=False, justify="right"),
        Column("lag", cut=False, justify="right"),
        "last_error",
    ]
    show(shown, output, columns, "Watchers")


def _set_paused(watcher_id: int, paused: bool, output: Output) -> None:
    from herald import notify
    from herald.commands import watchers

    with translated():
        done = watchers.set_paused(engine(), watcher_id, paused)
    wake(notify.WATCHERS)
    if output == Output.json:
        show_one(
            {
                "id": done.watcher_id,
                "asset": done.asset,
                "name": done.name,
                "state": done.state,
                "sharing": done.sharing,
            },
            output,
        )
        return
    what = f"Watcher {watcher_id} ({done.asset}/{done.name})"
    if paused:
        console.print(f"{what} paused: its messages wait in the broker until it is resumed.", markup=False)
    else:
        console.print(f"{what} resumed: a triggerer takes it within seconds.", markup=False)
    if done.sharing:
        names = ", ".join(f"{w['id']} ({w['asset']}/{w['name']})" for w in done.sharing)
        state = "paused with it" if paused else "resume with it unless one of them is paused"
        console.print(f"It shares its connection with watcher(s) {names}: they {state}.", markup=False)


@watchers_app.command("pause")
def watchers_pause(watcher_id: WatcherId, output: OutputOpt = Output.table) -> None:
    """Stop consuming a watcher's queue; its messages wait in the broker, none is lost."""
    _set_paused(watcher_id, True, output)


@watchers_app.command("resume")
def watchers_resume(watcher_id: WatcherId, output: OutputOpt = Output.table) -> None:
    """Consume a paused watcher's queue again, from the messages that waited."""
    _set_paused(watcher_id, False, output)


@dead_app.command("list")
def dead_letters_list(
    watcher: Annotated[int | None, typer.Option("--watcher", min=1, help="Only those of this watcher id.")] = None,
    limit: Limit = 100,
    output: OutputOpt = Output.table,
) -> None:
    """Messages that could not become events, with the reason (the start of each body: `show ID` for all)."""
    from herald.commands.watchers import require_watcher
    from herald.store import queries

    with engine().connect() as conn, translated():
        if watcher is not None:
            require_watcher(conn, watcher)
        rows = queries.list_dead_letters(conn, limit, watcher_id=watcher)
    if output == Output.json:
        show(rows, output, [], "Dead letters")
        return
    shown = [{**r, "created": when(r["created_at"]), "replayed": when(r.get("replayed_at"))} for r in rows]
    columns: list[str | Column] = [
        Column("id", cut=False, justify="right"),
        Column("watcher_id", "watcher", cut=False, justify="right"),
        "error",
        "body",
        Column("body_size", "size", cut=False, justify="right"),
        Column("created", "created (UTC)", cut=False),
        Column("replayed", cut=False),
    ]
    show(shown, output, columns, "Dead letters")


@dead_app.command("show")
def dead_letters_show(dead_letter_id: Annotated[int, typer.Argument(min=1, help="The dead letter's id.")]) -> None:
    """One dead letter with its stored body whole (listings show the start of each body)."""
    from herald.store import queries

    with engine().connect() as conn:
        found = queries.get_dead_letter(conn, dead_letter_id)
    if found is None:
        fail(f"no dead letter {dead_letter_id}", "list them with: herald dead-letters list")
    show_one(found, Output.json)


@dead_app.command("replay")
def dead_letters_replay(
    dead_letter_id: Annotated[int | None, typer.Argument(min=1, help="The dead letter to replay.")] = None,
    watcher: Annotated[
        int | None, typer.Option("--watcher", min=1, help="Replay every dead letter of this watcher id instead.")
    ] = None,
) -> None:
    """Feed dead letters back through their watcher's trigger (after fixing the DAG file)."""
    from herald import notify
    from herald.commands import dead_letters

    if (dead_letter_id is None) == (watcher is None):
        fail("name one dead letter, or --watcher ID for all of a watcher's", "list them with: herald dead-letters list")
    with translated():
        if watcher is not None:
            count = dead_letters.request_replay_of_watcher(engine(), watcher)
        else:
            assert dead_letter_id is not None
            dead_letters.request_replay(engine(), dead_letter_id)
    wake(notify.REPLAY)
    if watcher is not None:
        console.print(f"{count} dead letter(s) of watcher {watcher} will be replayed by the triggerer holding it.")
    else:
        console.print(f"Dead letter {dead_letter_id} will be replayed by the triggerer holding its watcher.")
