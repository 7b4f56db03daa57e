"""`herald dags list|errors|show|trigger|pause|unpause`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from herald.cli.common import Limit, OutputOpt, engine, json_option, translated, wake
from herald.cli.output import Column, Output, console, fail, part_table, show, show_one, view

dags_app = typer.Typer(help="List, trigger and pause DAGs.", no_args_is_help=True)


@dags_app.command("list")
def dags_list(limit: Limit = 100, output: OutputOpt = Output.table) -> None:
    """DAGs, their schedules and whether they are paused."""
    from herald.store import queries

    with engine().connect() as conn:
        rows = queries.list_dags(conn, limit)
    if output == Output.json:
        show(rows, output, [], "DAGs")
        return
    shown = [
        {
            **r,
            "paused": "yes" if r["is_paused"] else "",
            "tasks": ", ".join(r["tasks"] or []),
            "batch": "" if not r["batch"] else f"{r['batch']['max_events']} / {r['batch']['max_wait']}s",
        }
        for r in rows
    ]
    columns: list[str | Column] = [
        Column("dag_id", "dag", cut=False),
        "schedule",
        Column("paused", cut=False),
        Column("max_active_runs", "max runs", cut=False),
        "batch",
        "tasks",
    ]
    show(shown, output, columns, "DAGs")


@dags_app.command("errors")
def dags_errors(limit: Limit = 100, output: OutputOpt = Output.table) -> None:
    """DAG files that failed to import, with their tracebacks, and the DAGs' warnings.

    A warning names an Airflow argument a DAG sets that Herald accepts without effect.
    As JSON: one row per import error (`kind` "import_error") and per warning (`kind` "warning").
    """
    from herald.store import queries

    with engine().connect() as conn:
        errors = queries.list_import_errors(conn, limit)
        warnings = queries.list_dag_warnings(conn, limit)
    rows = [{"kind": "import_error", **e} for e in errors] + [{"kind": "warning", **w} for w in warnings]
    if output == Output.json or not rows:
        show(rows, output, [], "Import errors")
        return
    for row in errors:
        console.rule(f"[red]{row['fileloc']}")
        console.print(row["error"], highlight=False, markup=False)
    by_dag: dict[str, list[str]] = {}
    for w in warnings:
        by_dag.setdefault(f"{w['dag_id']} ({w['fileloc']})", []).append(w["warning"])
    for dag, items in by_dag.items():
        console.rule(f"[yellow]warnings of DAG {dag}", style="yellow")
        for item in items:
            console.print(f"- {item}", highlight=False, markup=False)


@dags_app.command("show")
def dags_show(dag_id: str, output: OutputOpt = Output.table) -> None:
    """One DAG: its schedule, file, and task graph (each task with what it waits for)."""
    from herald.commands.dags import require_dag
    from herald.store import queries

    with engine().connect() as conn, translated():
        data = queries.get_dag(conn, dag_id)
        if data is None:
            require_dag(conn, dag_id)  # raises NotFound, naming the known DAGs
    if data is None:  # not reached (require_dag raised); tells the type checker so
        fail(f"no DAG {dag_id!r}", "list DAGs with: herald dags list")
    if output == Output.json:
        show_one(data, output)
        return
    tasks = part_table("Tasks", ("task", "operator", "after", "trigger rule", "retries", "outlets"))
    for task in data["tasks"]:
        tasks.add_row(
            Text(task["task_id"] + ("[]" if task.get("mapped") else "")),
            Text(str(task.get("operator") or "")),
            Text(", ".join(task.get("upstream") or [])),
            Text(str(task.get("trigger_rule") or "")),
            str(task.get("retries") or 0),
            Text(", ".join(map(str, task.get("outlets") or []))),
        )
    fields = [
        ("schedule", data["schedule"]),
        ("paused", "yes" if data["is_paused"] else "no"),
        ("max active runs", data["max_active_runs"]),
        ("file", data["fileloc"]),
        ("description", data["description"]),
    ]
    view(f"DAG {data['dag_id']}", fields, tasks)
    console.print(Text(f"Its runs: herald runs list --dag {data['dag_id']}", style="dim"), soft_wrap=True)


def _set_paused(dag_id: str, paused: bool) -> None:
    from herald import notify
    from herald.commands import dags

    with translated():
        dags.set_paused(engine(), dag_id, paused)
    wake(notify.SCHEDULER)
    console.print(f"DAG {dag_id} {'paused' if paused else 'unpaused'}.")


@dags_app.command("pause")
def dags_pause(dag_id: str) -> None:
    """Stop creating runs for a DAG (its events keep queueing)."""
    _set_paused(dag_id, True)


@dags_app.command("unpause")
def dags_unpause(dag_id: str) -> None:
    """Resume a paused DAG; events queued meanwhile make their runs."""
    _set_paused(dag_id, False)


@dags_app.command("trigger")
def dags_trigger(
    dag_id: str,
    conf: Annotated[str | None, typer.Option(help="Run parameters as a JSON object.")] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Queue a manual run of a DAG."""
    from herald import notify
    from herald.commands import dags
    from herald.store.states import RunState

    data = json_option(conf, "--conf")
    with translated():
        run_id = dags.trigger(engine(), dag_id, data)
    wake(notify.SCHEDULER)
    if output == Output.json:
        show_one({"run_id": run_id, "dag_id": dag_id, "state": RunState.QUEUED.value, "conf": data}, output)
    else:
        console.print(f"Queued run {run_id}")
