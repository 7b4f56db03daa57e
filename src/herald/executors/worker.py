"""A pre-started worker process: DAG files imported once, then one task try at a time."""

from __future__ import annotations

import contextlib
import copy
import gc
import io
import json
import logging
import os
import signal
import socket
import sys
import traceback
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from herald.airflow.baseoperator import fail_resumed, materialise
from herald.airflow.exceptions import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    ParamValidationError,
)
from herald.airflow.params import resolve_params
from herald.airflow.runtime import (
    ConnectionAccessor,
    Macros,
    TaskInstance,
    Vars,
    call_with_context,
    follow_branch,
    run_bash,
    run_sensor,
    short_circuit,
)
from herald.airflow.templating import environment, render
from herald.dagcheck import Stamp
from herald.executors.reaper import WorkerKeeper, die_with_parent
from herald.sdk.airflow_triggers import TRIGGER_FAIL, decode_value
from herald.sdk.asset_events import (
    AssetEvent,
    InletEventsAccessors,
    OutletEventAccessors,
    collect_metadata,
)
from herald.sdk.assets import Asset, AssetAlias, AssetRef
from herald.sdk.context import DagRun, TriggeringAssetEvents, set_current_context
from herald.sdk.dag import DAG, RETURN_KEY, Task, XComArg
from herald.sdk.masking import collecting, redact
from herald.sdk.waits import TaskDeferred
from herald.store.states import RunType, TryState
from herald.store.storable import DEPTH_CEILING, SizeLimits, TailBuffer, json_problem, size_problem


class _Tee(io.TextIOBase):
    """Collects what a task prints (its log) while still writing to the real stream."""

    def __init__(self, buffer: io.StringIO) -> None:
        self.buffer_ = buffer

    def write(self, s: str) -> int:
        self.buffer_.write(s)
        return len(s)

    def writable(self) -> bool:
        return True


def _events(request: dict[str, Any]) -> TriggeringAssetEvents:
    events = TriggeringAssetEvents()
    for e in request.get("events", []):
        event = AssetEvent.from_wire(e)
        events.setdefault(event.asset, []).append(event)
    return events


def _inlets(task: Task, request: dict[str, Any]) -> InletEventsAccessors:
    """`inlet_events`: the recent events of the task's inlets the scheduler sent (newest last)."""
    inlets = [i for i in task.inlets if isinstance(i, Asset | AssetAlias | AssetRef)]
    return InletEventsAccessors.from_wire(inlets, request.get("inlet_events") or {})


def _logical_date(dag: DAG, run: dict[str, Any], start: datetime | None) -> datetime | None:
    """The run's logical date: given by the scheduler, else the cron tick of a scheduled run.

    Event-driven runs have none; a manual run's is the time it started (as Airflow's
    trigger form fills it in).
    """
    given = run.get("logical_date")
    if given:
        return datetime.fromisoformat(given)
    ticks = dag.ticks
    if run["run_type"] == RunType.SCHEDULED and ticks is not None and start is not None:
        return ticks.at_or_before(start)
    if run["run_type"] == RunType.MANUAL:
        return start
    return None


def _xcom(dag: DAG, request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every XCom of the run the try may pull (return values under "return_value")."""
    xcom: dict[str, dict[str, Any]] = {tid: dict(v) for tid, v in (request.get("xcom") or {}).items()}
    for tid, value in request.get("upstream", {}).items():
        xcom.setdefault(tid, {}).setdefault(RETURN_KEY, value)
    for tid, values in xcom.items():
        # multiple_outputs: a scheduler that sends only return values still lets `out["key"]` resolve
        up = dag.tasks.get(tid)
        if up is not None and up.multiple_outputs and isinstance(values.get(RETURN_KEY), dict):
            for key, value in values[RETURN_KEY].items():
                values.setdefault(str(key), value)
    return xcom


def task_context(dag: DAG, request: dict[str, Any]) -> dict[str, Any]:
    """The task's context: the values Airflow gives `**context` and `get_current_context()`."""
    import pendulum

    run = request["run"]
    task = dag.tasks[request["task_id"]]
    start_text = run.get("start_date")
    start = datetime.fromisoformat(start_text) if start_text else None
    logical = _logical_date(dag, run, start)
    if logical is not None:
        logical = pendulum.instance(logical)
    interval_start = run.get("data_interval_start")
    interval_end = run.get("data_interval_end")
    dag_run = DagRun(
        run_id=run["run_id"],
        dag_id=run["dag_id"],
        run_type=run["run_type"],
        conf=run["conf"],
        start_date=start,
        logical_date=logical,
        data_interval_start=(
            pendulum.instance(datetime.fromisoformat(interval_start))
            if interval_start
            else logical - timedelta(seconds=dag.cron_interval)
            if logical is not None and run["run_type"] == RunType.SCHEDULED and dag.cron_interval
            else logical
        ),
        data_interval_end=pendulum.instance(datetime.fromisoformat(interval_end)) if interval_end else logical,
        run_after=logical or start,
    )
    map_index = request.get("map_index")
    ti = TaskInstance(
        dag_id=dag.dag_id,
        task_id=task.task_id,
        run_id=run["run_id"],
        try_number=request["try_number"],
        map_index=map_index if isinstance(map_index, int) else -1,
        xcom=_xcom(dag, request),
        task=task.operator if task.operator is not None else task,
        max_tries=task.retries,
        hostname=socket.gethostname(),
    )
    events = _events(request)
    context: dict[str, Any] = {
        "dag": dag,
        "task": ti.task,
        "ti": ti,
        "task_instance": ti,
        "dag_run": dag_run,
        "run_id": run["run_id"],
        "triggering_asset_events": events,
        "outlet_events": OutletEventAccessors(task.outlets),
        "inlet_events": _inlets(task, request),
        "logical_date": logical,
        "data_interval_start": dag_run.data_interval_start,
        "data_interval_end": dag_run.data_interval_end,
        "run_after": dag_run.run_after,
        "map_index": ti.map_index,
        "var": Vars(),
        "conn": ConnectionAccessor(),
        "macros": Macros(),
        "inlets": list(task.inlets),
        "outlets": list(task.outlets),
        "test_mode": False,
    }
    if logical is not None:
        context.update(
            ds=logical.strftime("%Y-%m-%d"),
            ds_nodash=logical.strftime("%Y%m%d"),
            ts=logical.isoformat(),
            ts_nodash=logical.strftime("%Y%m%dT%H%M%S"),
            ts_nodash_with_tz=logical.isoformat().replace("-", "").replace(":", ""),
            task_instance_key_str=f"{dag.dag_id}__{task.task_id}__{logical.strftime('%Y%m%d')}",
        )
    # params are validated against their Param schemas: a bad conf fails the try, without retries
    context["params"] = resolve_params({**dag.params, **task.params}, run["conf"] or {})
    return context


def _callbacks(task: Task, name: str, context: dict[str, Any], out: io.StringIO) -> None:
    for fn in task.callbacks.get(name, []):
        try:
            fn(context)
        except Exception:  # a callback's failure is logged; it never changes the try's state
            out.write(f"{name} failed:\n{traceback.format_exc()}")


def _secs(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _resume_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The kwargs of a resumed method as the operator gets them: the trigger's event as it yielded it
    (a time trigger's moment is a pendulum DateTime; datetimes, timedeltas and tuples come back as such)."""
    if "event" not in kwargs:
        return kwargs
    return {**kwargs, "event": decode_value(kwargs["event"])}


def _execute(dag: DAG, task: Task, context: dict[str, Any], resume: tuple[str, dict[str, Any]] | None = None) -> Any:
    """Run the task's code: an operator's execute, or a TaskFlow function and its variant's behaviour.

    `resume`: an operator that deferred resumes in this method with these kwargs
    (`BaseOperator.defer`), as Airflow's task runner calls `next_method`.
    """
    env = environment(dag)
    combination: dict[str, Any] = {}
    if task.mapped is not None:
        index = context["map_index"]
        if index < 0:
            raise RuntimeError(
                f"task {task.task_id!r} is mapped (.expand()) but this try has no map index: "
                f"the scheduler must create one try per map index"
            )
        combos = task.mapped.combinations(lambda v: render(v, context, env) if isinstance(v, XComArg) else v)
        if index >= len(combos):
            raise IndexError(f"map index {index} of task {task.task_id!r} is beyond its {len(combos)} expansion(s)")
        combination = combos[index]
    if task.kind == "operator":
        op = materialise(task, combination) if task.mapped is not None else copy.copy(task.operator)
        context["task"] = op
        context["ti"].task = op
        op.render_template_fields(context, env)
        if hasattr(op, "pre_execute"):
            op.pre_execute(context)
        if resume is not None:
            method, kwargs = resume
            if method != TRIGGER_FAIL:
                print(f"Resuming after the deferral in {type(op).__name__}.{method}")
            # As Airflow's task runner: the operator's own resume_execution, which a subclass may override.
            value = op.resume_execution(method, _resume_kwargs(kwargs), context)
        else:
            value = op.execute(context)
        if hasattr(op, "post_execute"):
            op.post_execute(context, value)
        return value
    if resume is not None and resume[0] == TRIGGER_FAIL:
        fail_resumed(resume[1])  # a TaskFlow task that deferred: its trigger failed or timed out
    args = render(list(task.args), context, env)
    kwargs = {**render(task.kwargs, context, env), **combination}
    options = dict(task.options)
    if "templates_dict" in options:
        context["templates_dict"] = render(options["templates_dict"], context, env)

    def call() -> Any:
        return call_with_context(task.function, args, kwargs, context)

    if task.kind == "sensor":
        return run_sensor(
            call,
            poke_interval=_secs(options.get("poke_interval", 60)),
            timeout=_secs(options.get("sensor_timeout", 7 * 24 * 3600)),
            soft_fail=bool(options.get("soft_fail", False)),
            never_fail=bool(options.get("never_fail", False)),
            exponential_backoff=bool(options.get("exponential_backoff", False)),
            max_wait=_secs(options["max_wait"]) if options.get("max_wait") is not None else None,
        )
    value = call()
    if task.kind == "branch":
        follow_branch(context, value)
    elif task.kind == "short_circuit":
        short_circuit(context, value, bool(options.get("ignore_downstream_trigger_rules", True)))
    elif task.kind == "bash":
        if not isinstance(value, str) or not value.strip():
            raise TypeError(f"@task.bash {task.task_id!r} must return a non-empty string command, got {value!r}")
        last = run_bash(
            render(value, context, env),
            context,
            env=render(options.get("env"), context, env),
            append_env=bool(options.get("append_env", False)),
            cwd=render(options.get("cwd"), context, env),
            skip_on_exit_code=options.get("skip_on_exit_code", 99),
            output_encoding=options.get("output_encoding", "utf-8"),
        )
        processor = options.get("output_processor")
        return processor(last) if processor is not None else last
    return value


def run_task(dags: dict[str, DAG], request: dict[str, Any], limits: SizeLimits | None = None) -> dict[str, Any]:
    """Run one try; returns the result message for the executor.

    The result's `state` is success, failed or skipped; `skip` lists the tasks a branch
    or short-circuit skips; `xcom` holds the values pushed with `ti.xcom_push` (and the
    keys of a `multiple_outputs` result); `retry` is False when the failure must not be
    retried (AirflowFailException, a sensor's timeout, invalid params). The log keeps
    its last `limits.log` bytes; a return value or XCom over `limits.result` bytes fails the try.
    """
    limits = limits or SizeLimits()
    started = datetime.now(UTC)
    out = TailBuffer(limits.log)  # what the task prints is capped as it comes, never held whole
    result: dict[str, Any] = {
        "ti_id": request["ti_id"],
        "started_at": started,
        "hostname": socket.gethostname(),
        "skip": [],
        "xcom": {},
        "retry": True,
    }
    dag = dags.get(request["dag_id"])
    if dag is None or request["task_id"] not in dag.tasks:
        result.update(
            state=TryState.FAILED,
            error=f"task {request['dag_id']}.{request['task_id']} is not in the DAG files "
            f"this worker loaded (was the file changed or removed?)",
            log="",
            ended_at=datetime.now(UTC),
        )
        return result
    task = dag.tasks[request["task_id"]]
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    tee = _Tee(out)
    context: dict[str, Any] = {}
    secrets: set[str] = set()
    try:
        with contextlib.redirect_stdout(tee), contextlib.redirect_stderr(tee), collecting() as secrets:
            context = task_context(dag, request)
            set_current_context(context)
            _callbacks(task, "on_execute_callback", context, out)
            resume = (request["next_method"], request.get("next_kwargs") or {}) if request.get("next_method") else None
            value = collect_metadata(_execute(dag, task, context, resume), context["outlet_events"])
        ti: TaskInstance = context["ti"]
        if not task.do_xcom_push:
            value = None
        if task.multiple_outputs and value is not None:
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise TypeError(
                    f"task {task.task_id!r} has multiple_outputs=True but returned a {type(value).__name__}, "
                    f"not a dict with string keys"
                )
            for key, item in value.items():
                ti.xcom_push(key, item)
        try:
            json.dumps(value, allow_nan=False)  # NaN and Infinity are not JSON: nothing downstream could read them
        except (TypeError, ValueError, RecursionError) as exc:
            raise TypeError(
                f"task {task.task_id!r} returned a {type(value).__name__}, which is not "
                f"JSON-serialisable ({exc}); return dicts, lists, strings, finite numbers, booleans or None"
            ) from None
        problem = json_problem(value, DEPTH_CEILING, f"the return value of task {task.task_id!r}")
        if problem is not None:
            raise ValueError(f"{problem}; it could not be stored nor passed to downstream tasks")
        _check_sizes(task, value, ti.pushed, limits.result)
        result.update(
            state=TryState.SUCCESS,
            result=value,
            outlet_extras=context["outlet_events"].extras(),
            outlet_alias_events=[e.to_wire() for e in context["outlet_events"].alias_events()],
            skip=sorted(ti.skip_tasks),
            xcom=dict(ti.pushed),
        )
        _callbacks(task, "on_success_callback", context, out)
    except TaskDeferred as deferred:
        # the worker is free now: the scheduler keeps the wait and ends it without one
        deferral = deferred.deferral
        problem = size_problem(deferral.kwargs, limits.result, f"the kwargs task {task.task_id!r} resumes with")
        if problem is None and deferral.trigger is not None:
            problem = size_problem(deferral.trigger_kwargs, limits.result, f"the kwargs of trigger {deferral.trigger}")
        if problem is not None:  # kept in the database while it waits: capped as a return value is
            out.write(f"Task failed: {problem}\n")
            result.update(state=TryState.FAILED, result=None, error=problem)
        else:
            out.write(f"Task deferred: waiting for {deferred.deferral.describe()}\n")
            result.update(state=TryState.DEFERRED, result=None, defer=deferred.deferral.to_wire())
    except AirflowSkipException as exc:
        out.write(f"Task skipped: {exc}\n")
        pushed = context["ti"].pushed if "ti" in context else {}
        result.update(state=TryState.SKIPPED, result=None, xcom=dict(pushed))
        if context:
            _callbacks(task, "on_skipped_callback", context, out)
    except BaseException as exc:  # a task's SystemExit or KeyboardInterrupt fails the task, not the worker
        out.write(traceback.format_exc())
        retry = not isinstance(exc, AirflowFailException | AirflowSensorTimeout | ParamValidationError)
        result.update(state=TryState.FAILED, error=f"{type(exc).__name__}: {exc}", retry=retry)
        if context:
            context["exception"] = exc
            will_retry = retry and request["try_number"] <= task.retries
            _callbacks(task, "on_retry_callback" if will_retry else "on_failure_callback", context, out)
    finally:
        set_current_context(None)
        root.removeHandler(handler)
    result.update(log=redact(out.getvalue(), secrets), ended_at=datetime.now(UTC))
    if result.get("error"):
        result["error"] = redact(result["error"], secrets)
    return result


def _check_sizes(task: Task, value: Any, pushed: dict[str, Any], limit: int) -> None:
    """Fail the try when its return value or a pushed XCom is larger than `limit` bytes as JSON."""
    problem = size_problem(value, limit, f"the return value of task {task.task_id!r}")
    for key, item in pushed.items():
        problem = problem or size_problem(item, limit, f"the XCom {key!r} pushed by task {task.task_id!r}")
    if problem is not None:
        raise ValueError(problem)


def end_leftovers(keeper: WorkerKeeper | None, message: dict[str, Any]) -> dict[str, Any]:
    """End what the try left running (`reaper`), saying so at the end of its log; returns `message`."""
    if keeper is None:
        return message
    ended = keeper.end_leftovers()
    if ended:
        note = f"[herald] ended {len(ended)} process(es) the task left running: {', '.join(ended)}\n"
        message["log"] = (message.get("log") or "") + note
    return message


def worker_main(
    conn: Connection,
    dags_folder: str,
    files: dict[str, Stamp] | None = None,
    process_groups: bool = True,
    limits: SizeLimits | None = None,
) -> None:
    """Entry point of a worker process.

    With `files`, only those DAG files are imported, each only while it is the
    version Herald checked and imported itself (`herald.dagcheck`). `process_groups`:
    what a try starts ends with it (`Settings.try_process_groups`); `limits`: the size
    caps (`Settings.limits`).
    """
    from herald.loader import load_folder

    # Ctrl-C in a terminal reaches the whole process group; the parent decides
    # when workers stop, so a running task is not interrupted half-way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Herald's death (kill -9 included) kills this worker, and its guard then its group.
    die_with_parent(signal.SIGKILL)
    # Before the DAG files are imported: what an import starts is under the worker too.
    keeper = WorkerKeeper.start() if process_groups else None
    bag = load_folder(Path(dags_folder), only=files)
    if keeper is not None and (started := keeper.end_leftovers()):
        logging.getLogger("herald.worker").warning(
            "ended %d process(es) the DAG files started when imported: %s", len(started), ", ".join(started)
        )
    limits = limits or SizeLimits()
    # Which version of each DAG this worker has: after a reload the pool lets it
    # run the DAGs whose file did not change until the new workers are ready.
    versions: dict[str, list[Any]] = {}
    for dag_id, dag in bag.dags.items():
        version = bag.files.get(dag.fileloc or "")
        if version is not None:
            versions[dag_id] = [dag.fileloc, version.mtime_ns, version.size]
    # "group": the executor may stop this worker with everything under it (`reaper.end_tree`).
    # What the worker holds from now on lives as long as it: no full collection walks it
    # again, nor the interpreter's last one when the worker exits.
    gc.freeze()
    conn.send({"ready": os.getpid(), "dags": versions, "group": keeper is not None})
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            break
        if request is None:
            break
        try:
            # What the try left running ends before its result is sent: a downstream task
            # never meets it, and the worker's next try starts clean.
            conn.send(end_leftovers(keeper, run_task(bag.dags, request, limits)))
        except (BrokenPipeError, OSError):
            break
    sys.exit(0)
