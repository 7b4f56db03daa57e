"""A pre-started worker process: DAG files imported once, then one task try at a time."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import socket
import sys
import traceback
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from herald.sdk.assets import Asset
from herald.sdk.context import (
    AssetEvent,
    DagRun,
    OutletEvents,
    TriggeringAssetEvents,
    set_current_context,
)
from herald.sdk.dag import DAG, XComArg


class _Tee(io.TextIOBase):
    """Collects what a task prints (its log) while still writing to the real stream."""

    def __init__(self, buffer: io.StringIO) -> None:
        self.buffer_ = buffer

    def write(self, s: str) -> int:
        self.buffer_.write(s)
        return len(s)

    def writable(self) -> bool:
        return True


def _context(dag: DAG, request: dict[str, Any]) -> dict[str, Any]:
    run = request["run"]
    events = TriggeringAssetEvents()
    for e in request["events"]:
        asset = Asset(e["asset"], uri=e["uri"])
        events.setdefault(asset, []).append(
            AssetEvent(
                id=e["id"],
                asset=asset,
                timestamp=datetime.fromisoformat(e["timestamp"]),
                extra=e["extra"],
                source=e["source"],
            )
        )
    start = run.get("start_date")
    dag_run = DagRun(
        run_id=run["run_id"],
        dag_id=run["dag_id"],
        run_type=run["run_type"],
        conf=run["conf"],
        start_date=datetime.fromisoformat(start) if start else None,
    )
    task = dag.tasks[request["task_id"]]
    params = {**dag.params, **run["conf"]}
    return {
        "dag": dag,
        "dag_run": dag_run,
        "run_id": run["run_id"],
        "params": params,
        "triggering_asset_events": events,
        "outlet_events": OutletEvents(task.outlets),
        "ti": {"task_id": task.task_id, "try_number": request["try_number"]},
        "task_instance": {"task_id": task.task_id, "try_number": request["try_number"]},
        "logical_date": None,
    }


def _resolve(value: Any, upstream: dict[str, Any]) -> Any:
    if isinstance(value, XComArg):
        return upstream.get(value.task.task_id)
    if isinstance(value, list):
        return [_resolve(v, upstream) for v in value]
    if isinstance(value, tuple):
        return tuple(_resolve(v, upstream) for v in value)
    if isinstance(value, dict):
        return {k: _resolve(v, upstream) for k, v in value.items()}
    return value


def run_task(dags: dict[str, DAG], request: dict[str, Any]) -> dict[str, Any]:
    """Run one try; returns the result message for the executor."""
    started = datetime.now(UTC)
    out = io.StringIO()
    result: dict[str, Any] = {"ti_id": request["ti_id"], "started_at": started, "hostname": socket.gethostname()}
    dag = dags.get(request["dag_id"])
    if dag is None or request["task_id"] not in dag.tasks:
        result.update(
            state="failed",
            error=f"task {request['dag_id']}.{request['task_id']} is not in the DAG files "
            f"this worker loaded (was the file changed or removed?)",
            log="",
            ended_at=datetime.now(UTC),
        )
        return result
    task = dag.tasks[request["task_id"]]
    context = _context(dag, request)
    args = [_resolve(a, request["upstream"]) for a in task.args]
    kwargs = {k: _resolve(v, request["upstream"]) for k, v in task.kwargs.items()}
    for name in task.context_params():
        if name not in kwargs:
            kwargs[name] = context[name]
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    token = set_current_context(context)
    tee = _Tee(out)
    try:
        with contextlib.redirect_stdout(tee), contextlib.redirect_stderr(tee):
            value = task.function(*args, **kwargs)
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"task {task.task_id!r} returned a {type(value).__name__}, which is not "
                f"JSON-serialisable ({exc}); return dicts, lists, strings, numbers, booleans or None"
            ) from None
        result.update(state="success", result=value, outlet_extras=context["outlet_events"].extras())
    except BaseException as exc:  # a task's SystemExit or KeyboardInterrupt fails the task, not the worker
        out.write(traceback.format_exc())
        result.update(state="failed", error=f"{type(exc).__name__}: {exc}")
    finally:
        set_current_context(None)
        del token
        root.removeHandler(handler)
    result.update(log=out.getvalue(), ended_at=datetime.now(UTC))
    return result


def _die_with_parent() -> None:
    """Ask Linux to kill this worker if Herald's process dies (kill -9 included)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the worker still exits when its pipe closes


def worker_main(conn: Connection, dags_folder: str) -> None:
    """Entry point of a worker process."""
    from herald.loader import load_folder

    os.environ["HERALD_WORKER"] = "1"
    # Ctrl-C in a terminal reaches the whole process group; the parent decides
    # when workers stop, so a running task is not interrupted half-way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    bag = load_folder(Path(dags_folder))
    conn.send({"ready": os.getpid()})
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            break
        if request is None:
            break
        try:
            conn.send(run_task(bag.dags, request))
        except (BrokenPipeError, OSError):
            break
    sys.exit(0)
