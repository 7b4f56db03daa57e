"""The child process that runs DAG callback requests: their DAG file imported once, each callable called.

Started by `herald.executors.dag_callbacks` with the requests of one DAG file.
It imports the file once, then for each request builds the context Airflow
gives a DAG callback (the template context of one task instance of the run,
with `reason`; just `dag`, `dag_run`, `run_id` and `reason` when the run has no
task) and calls each callable. What they print is the request's log; each
exception's traceback is kept. A line on the report pipe announces and ends
each request; a request never reported ended its process or ran out of time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

from herald.sdk.context import DagRun
from herald.sdk.dag import DAG
from herald.sdk.masking import collecting, redact
from herald.store.storable import TailBuffer


def _minimal(dag: DAG, request: dict[str, Any]) -> dict[str, Any]:
    run = request["run"]
    return {
        "dag": dag,
        "run_id": run["run_id"],
        "dag_run": DagRun(run_id=run["run_id"], dag_id=run["dag_id"], run_type=run["run_type"], conf=run["conf"]),
    }


def build_context(dag: DAG, request: dict[str, Any], out: TailBuffer) -> dict[str, Any]:
    """The callback's context: the chosen task instance's template context (as Airflow), plus `reason`."""
    from herald.executors.worker import task_context

    ti = request.get("ti")
    context: dict[str, Any] | None = None
    if ti is not None and ti["task_id"] in dag.tasks:
        task_request = {
            "run": request["run"],
            "task_id": ti["task_id"],
            "try_number": ti["try_number"],
            "map_index": ti["map_index"],
            "events": request.get("events", []),
            "xcom": request.get("xcom", {}),
            "upstream": {},
            "inlet_events": None,
        }
        try:
            context = task_context(dag, task_request)
        except Exception:  # e.g. a conf its params refuse: the callback still runs, with less
            out.write(f"the full context could not be built:\n{traceback.format_exc()}")
    if context is None:
        context = _minimal(dag, request)
    run = request["run"]
    ended = run.get("end_date")
    context["dag_run"] = dataclasses.replace(
        context["dag_run"], state=run.get("state"), end_date=datetime.fromisoformat(ended) if ended else None
    )
    if ti is not None and "ti" in context:
        context["ti"].state = ti["state"]
    context["reason"] = request["reason"]
    return context


def run_callbacks(dag: DAG, request: dict[str, Any], out: TailBuffer) -> list[str]:
    """Call each callable of the request's kind; returns the tracebacks of those that raised."""
    errors: list[str] = []
    kind = request["kind"]
    context = build_context(dag, request, out)
    for fn in dag.callbacks.get(kind, []):
        name = getattr(fn, "__name__", type(fn).__name__)
        out.write(f"running {kind} {name} (reason: {request['reason']})\n")
        try:
            fn(context)
        except Exception:  # recorded with the run; it changes nothing else
            tb = traceback.format_exc()
            out.write(f"{kind} {name} failed:\n{tb}")
            errors.append(f"{name}: {tb}")
    return errors


def _one(dags: dict[str, DAG], load_error: str | None, request: dict[str, Any], limit: int) -> dict[str, Any]:
    """Run one request's callbacks; its report line (log and tracebacks, secrets masked)."""
    out = TailBuffer(limit)
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    errors: list[str] = []
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), collecting() as secrets:
            dag = dags.get(request["dag_id"])
            if load_error is not None:
                errors.append(load_error)
            elif dag is None:
                errors.append(f"DAG {request['dag_id']!r} is no longer in {request['fileloc']}")
            else:
                try:
                    errors = run_callbacks(dag, request, out)
                except BaseException:  # SystemExit from a callback, or its context: this request fails alone
                    errors.append(traceback.format_exc())
    finally:
        root.removeHandler(handler)
    return {
        "done": request["id"],
        "log": redact(out.getvalue(), secrets),
        "errors": [redact(e, secrets) for e in errors],
    }


def child_main(argv: list[str]) -> None:
    """Entry point: argv is [batch file, report fd].

    The batch holds the requests of one DAG file. Each is announced on the report
    pipe (`{"start": id}`) before it runs and reported (`{"done": id, ...}`) after,
    one JSON line each, so the parent holds each request to its own time limit.
    """
    from herald.loader import load_file

    batch = json.loads(Path(argv[0]).read_text())
    report = os.fdopen(int(argv[1]), "w", buffering=1)
    limit = int(batch.get("log_limit", 1024 * 1024))
    dags: dict[str, DAG] = {}
    load_error: str | None = None
    quiet = TailBuffer(limit)
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        try:
            dags = {d.dag_id: d for d in load_file(batch["fileloc"], Path(batch["folder"]))}
        except BaseException:  # the DAG file failed to import: each request says so
            load_error = f"importing {batch['fileloc']} failed: {traceback.format_exc()}"
    for request in batch["requests"]:
        request["fileloc"] = batch["fileloc"]
        report.write(json.dumps({"start": request["id"]}) + "\n")
        report.write(json.dumps(_one(dags, load_error, request, limit)) + "\n")
    report.close()
    sys.exit(0)
