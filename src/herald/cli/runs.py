"""`herald runs list|show|retry`, `herald tasks logs|retry`.

Wherever a run id is asked for, a unique prefix of it or the short id that
listings show (the tag ending the id) will do (`herald.commands.runs.resolve`).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.text import Text

from herald.cli.common import Limit, OutputOpt, engine, run_id, translated, wake
from herald.cli.output import (
    Column,
    Output,
    console,
    duration,
    fail,
    part_table,
    plain_text,
    show,
    show_one,
    view,
    when,
)

runs_app = typer.Typer(help="List, inspect and retry runs.", no_args_is_help=True)
tasks_app = typer.Typer(help="Task instances: their logs, and retrying one.", no_args_is_help=True)

RunId = Annotated[str, typer.Argument(help="The run id, a unique prefix of it, or its short id (herald runs list).")]

#: how much of a task's result `runs show` shows
RESULT_SHOWN = 160

#: a state's colour in tables and views
STATE_STYLES = {
    "success": "green",
    "failed": "red",
    "upstream_failed": "red",
    "running": "cyan",
    "queued": "yellow",
    "scheduled": "yellow",
    "up_for_retry": "yellow",
    "skipped": "magenta",
}


#: why a try ended, spelled out (`herald.store.states.TryEnd`), and its colour
END_TEXT = {
    "success": ("succeeded", "green"),
    "failed": ("failed", "red"),
    "timed_out": ("timed out", "red"),
    "lost_worker": ("worker lost", "yellow"),
    "upstream_failed": ("upstream failed", "red"),
    "cancelled": ("cancelled", "magenta"),
    "skipped": ("skipped", "magenta"),
}


def _styled(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


@runs_app.command("list")
def runs_list(
    dag: Annotated[str | None, typer.Option("--dag", help="Only runs of this DAG.")] = None,
    state: Annotated[
        str | None, typer.Option("--state", help="queued, running, success, failed, skipped or cancelled.")
    ] = None,
    held: Annotated[
        bool,
        typer.Option(
            "--held",
            help="Events no run yet, held by a window or an absence watch, or cancelled by a cancel_on "
            "event before a run took them, instead.",
        ),
    ] = False,
    limit: Limit = 100,
    output: OutputOpt = Output.table,
) -> None:
    """Runs, newest first: short id, DAG, state, the flow-control rule holding, skipping or
    cancelling it (held by), when queued, how long, the events each consumed. With --held, the
    events a window (`within()`) or an absence (`missing_for()`) holds before any run exists, and
    those a `cancel_on=` event cancelled while a batch gathered them (held by "cancelled by event N")."""
    from herald.commands.dags import require_known_dag
    from herald.commands.runs import short_id
    from herald.store import held as store_held
    from herald.store import queries
    from herald.store.states import RunState

    known = [s.value for s in RunState]
    if state is not None and state not in known:
        fail(f"unknown state {state!r}", f"use one of: {', '.join(known)}")
    with engine().connect() as conn, translated():
        if dag is not None:
            require_known_dag(conn, dag)
        events = store_held.held_events(conn, limit, dag)
        rows = [] if held else queries.list_runs(conn, limit, dag, state)
    if held:
        _held_events(events, output)
        return
    if output == Output.json:
        show(rows, output, [], "Runs")
        return
    shown = [
        {
            **r,
            "run": short_id(r["run_id"]),
            "queued": when(r["queued_at"]),
            "duration": duration(r["started_at"], r["ended_at"]),
            "events": ", ".join(map(str, r["event_ids"])),
        }
        for r in rows
    ]
    columns: list[str | Column] = [
        Column("run", cut=False),
        Column("dag_id", "dag"),
        Column("state", cut=False),
        Column("held_by", "held by", cut=False),
        Column("run_type", "type"),
        Column("queued", "queued (UTC)", cut=False),
        Column("duration", cut=False, justify="right"),
        "events",
    ]
    show(shown, output, columns, "Runs")
    if events:
        more = "+" if len(events) == limit else ""
        console.print(
            Text(
                f"{len(events)}{more} event(s) held by a window or an absence, or cancelled before a run: "
                "herald runs list --held",
                style="dim",
            ),
            soft_wrap=True,
        )


def _held_events(events: list[dict[str, Any]], output: Output) -> None:
    """The events a window or an absence holds, or a `cancel_on=` event cancelled: event, DAG, rule
    (held by), key, since, until."""
    if output == Output.json:
        show(events, output, [], "Held events")
        return
    shown = [{**e, "since": when(e["since"]), "until": when(e["held_until"])} for e in events]
    columns: list[str | Column] = [
        Column("event_id", "event", cut=False),
        Column("dag_id", "dag"),
        Column("held_by", "held by", cut=False),
        "key",
        Column("since", "since (UTC)", cut=False),
        Column("until", "until (UTC)", cut=False),
        "detail",
    ]
    show(shown, output, columns, "Held events")


@runs_app.command("show")
def runs_show(run: RunId, output: OutputOpt = Output.table) -> None:
    """One run: its state, times and conf, each task's state, try, duration, result and error,
    and every ended try of each task with why it ended (failed, timed out, worker lost, upstream
    failed, cancelled, skipped)."""
    from herald.commands.runs import short_id
    from herald.store import queries

    found = run_id(run)
    with engine().connect() as conn:
        data = queries.get_run(conn, found)
    if data is None:  # deleted since it was resolved
        fail(f"no run {run!r}", "list runs with: herald runs list")
    if output == Output.json:
        show_one(data, output)
        return
    tasks = part_table("Tasks", ("task", "state", "try", "duration", "result / error"))
    for task in data["tasks"]:
        name = task["task_id"] + (f"[{task['map_index']}]" if task["map_index"] >= 0 else "")
        outcome = _outcome(task)
        tasks.add_row(
            Text(name),
            _styled(task["state"]),
            f"{task['try_number']}/{task['max_tries']}" if task["max_tries"] else str(task["try_number"]),
            duration(task["started_at"], task["ended_at"]),
            outcome,
        )
    fields: list[tuple[str, Any]] = [
        ("run id", data["run_id"]),
        ("dag", data["dag_id"]),
        ("state", _styled(data["state"])),
        ("type", data["run_type"]),
        ("queued", when(data["queued_at"])),
        ("started", when(data["started_at"])),
        ("ended", when(data["ended_at"])),
        ("duration", duration(data["started_at"], data["ended_at"])),
        ("logical date", when(data["logical_date"])),
        ("events", ", ".join(map(str, data["event_ids"]))),
        ("conf", data["conf"]),
    ]
    if data.get("held_by"):
        # flow control: what holds the queued run, or skipped or cancelled it
        fields.insert(3, ("held by", data["held_by"]))
    if data.get("cancelled_by_event") is not None:
        fields.insert(4, ("cancelled by event", data["cancelled_by_event"]))
    parts: list[Any] = [tasks if data["tasks"] else Text("No tasks yet.", style="dim")]
    if any(task.get("tries") for task in data["tasks"]):
        parts.append(_tries_table(data["tasks"]))
    view(f"Run {short_id(data['run_id'])}", fields, *parts)
    failed = [t["task_id"] for t in data["tasks"] if t["state"] == "failed"]
    if failed:
        console.print(
            Text(f"The failed task's log: herald tasks logs {short_id(data['run_id'])} {failed[0]}", style="dim"),
            soft_wrap=True,
        )


def _tries_table(tasks: list[dict[str, Any]]) -> Any:
    """Every ended try of each task, oldest first: how it ended, how long it ran, where, and why."""
    table = part_table("Tries", ("task", "try", "ended", "ran", "worker", "why"))
    for task in tasks:
        name = task["task_id"] + (f"[{task['map_index']}]" if task["map_index"] >= 0 else "")
        for x in task.get("tries") or []:
            spelled, style = END_TEXT.get(x["reason"], (x["reason"], ""))
            if x["state"] == "up_for_retry":
                spelled += ", will retry"
            elif x["reason"] == "lost_worker":
                spelled += ", requeued"
            last = [line for line in str(x.get("error") or "").strip().splitlines() if line.strip()]
            table.add_row(
                Text(name),
                str(x["try_number"]) if x["try_number"] else "-",
                Text(spelled, style=style),
                duration(x["started_at"], x["ended_at"]) if x["started_at"] else "",
                Text(plain_text(x.get("hostname") or "")),
                Text(plain_text(last[-1] if last else ""), style="red" if last else ""),
            )
    return table


def _outcome(task: dict[str, Any]) -> Text:
    """A task's error (its last line), else what a deferred try waits for, else its result (or the start of it)."""
    waiting = task.get("waiting_for") if task.get("state") == "deferred" else None
    if waiting:
        return Text(plain_text(_waiting_text(waiting)), style="dim")
    if task.get("error"):
        last = [line for line in str(task["error"]).strip().splitlines() if line.strip()]
        return Text(plain_text(last[-1] if last else ""), style="red")
    result = task.get("result_preview") or task.get("result")
    text = "" if result is None else plain_text(str(result))
    # a view shows the start of a large result; `-o json` (or the task's log) has it whole
    return Text(text if len(text) <= RESULT_SHOWN and not task.get("result_preview") else text[:RESULT_SHOWN] + "…")


def _waiting_text(waiting: dict[str, Any]) -> str:
    """What a deferred try waits for, in words."""
    deadline = f", until {when(waiting['deadline'])}" if waiting.get("deadline") else ""
    if waiting.get("trigger"):
        runner = f"run by {waiting['triggerer']}" if waiting.get("triggerer") else "not taken by a triggerer yet"
        return f"waits for trigger {waiting['trigger']} ({runner}){deadline}"
    if waiting.get("asset"):
        matching = f" matching {waiting['match']}" if waiting.get("match") else ""
        return f"waits for an event of {waiting['asset']}{matching}{deadline}"
    return f"waits until {when(waiting['deadline'])}" if waiting.get("deadline") else "waits"


def _retry(run: str, task: str | None, output: Output) -> None:
    from herald import notify
    from herald.commands import runs

    found = run_id(run)
    with translated():
        done = runs.retry(engine(), found, task)
    wake(notify.SCHEDULER)
    if output == Output.json:
        show_one({"run_id": done.run_id, "state": done.state.value, "retried": done.retried}, output)
    elif done.retried:
        console.print(
            f"Run {found} is {done.state}; retrying {', '.join(done.retried)}.", highlight=False, markup=False
        )
    else:
        console.print(f"Run {found} is {done.state} again.", highlight=False, markup=False)


@runs_app.command("retry")
def runs_retry(
    run: RunId,
    task: Annotated[str | None, typer.Option("--task", help="Only this failed task (and what it held back).")] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Run a failed run's failed tasks again, and the tasks they held back."""
    _retry(run, task, output)


@tasks_app.command("retry")
def tasks_retry(
    run: RunId,
    task_id: Annotated[str, typer.Argument(help="The failed task to run again.")],
    output: OutputOpt = Output.table,
) -> None:
    """Run one failed task of a failed run again, and the tasks it held back (as `runs retry RUN --task T`)."""
    _retry(run, task_id, output)


@tasks_app.command("logs")
def tasks_logs(
    run: RunId,
    task_id: str,
    map_index: Annotated[
        int | None, typer.Option("--map-index", help="Of a mapped task: this map index (default: the first).")
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """What a task printed (stdout, stderr, logging), and its error."""
    from herald.store import queries

    found = run_id(run)
    with engine().connect() as conn:
        data = queries.task_log(conn, found, task_id, map_index)
        if data is None:
            detail = queries.get_run(conn, found)
    if data is None:
        if detail is None:
            fail(f"no run {run!r}", "list runs with: herald runs list")
        indexes = sorted(x["map_index"] for x in detail["tasks"] if x["task_id"] == task_id)
        if indexes:
            fail(f"task {task_id!r} of run {found} has no map index {map_index}", f"its map indexes: {indexes}")
        fail(
            f"run {found} has no task {task_id!r}",
            f"its tasks: {', '.join(x['task_id'] for x in detail['tasks']) or 'none yet'}",
        )
    if output == Output.json:
        show_one(data, output)
        return
    index = f"[{data['map_index']}]" if data["map_index"] >= 0 else ""
    # The heading is text, never markup: a task id or a map index in brackets prints as it is.
    console.print(
        Text.assemble((f"{task_id}{index}", "bold"), f" ({data['state']}, try {data['try_number']}) of run {found}"),
        soft_wrap=True,
    )
    # what the task printed is shown as it printed it (markup and all), never obeyed by the terminal
    sys.stdout.write(plain_text(data["log"]))
    if data["log"] and not data["log"].endswith("\n"):
        sys.stdout.write("\n")
    if data["error"]:
        console.print(plain_text(data["error"]), style="red", highlight=False, markup=False)
