"""What a running task sees and how Airflow's task kinds run: the `ti` object, skips, bash, sensors."""

from __future__ import annotations

import codecs
import functools
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any

from herald.airflow.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    AirflowTaskTimeout,
)
from herald.sdk.dag import DAG, RETURN_KEY


class TaskInstance:
    """The running try (`ti` / `task_instance` in the context): identity, XCom pull and push.

    `xcom_pull` reads the values of the run's finished tasks that the scheduler sent
    with the try; `xcom_push` values are stored with the try's result.
    """

    def __init__(
        self,
        *,
        dag_id: str,
        task_id: str,
        run_id: str,
        try_number: int,
        map_index: int,
        xcom: Mapping[str, Mapping[str, Any]],
        task: Any = None,
        max_tries: int = 0,
        hostname: str = "",
    ) -> None:
        self.dag_id = dag_id
        self.task_id = task_id
        self.run_id = run_id
        self.try_number = try_number
        self.map_index = map_index
        self.task = task
        self.max_tries = max_tries
        self.hostname = hostname
        self._xcom = xcom
        self.pushed: dict[str, Any] = {}
        self.skip_tasks: set[str] = set()

    def xcom_pull(
        self,
        task_ids: str | Iterable[str] | None = None,
        dag_id: str | None = None,
        key: str = RETURN_KEY,
        include_prior_dates: bool = False,
        *,
        map_indexes: int | Iterable[int] | None = None,
        default: Any = None,
        run_id: str | None = None,
    ) -> Any:
        """The value a task of this run pushed under `key` (its return value by default).

        `task_ids` may be one id (returns the value) or several (returns a list);
        without it, the current task's own value.
        """
        if (dag_id not in (None, self.dag_id)) or (run_id not in (None, self.run_id)) or include_prior_dates:
            raise NotImplementedError(
                "xcom_pull reads the current run only in Herald "
                "(dag_id, run_id and include_prior_dates are not supported)"
            )
        if task_ids is None:
            task_ids = self.task_id
        if isinstance(task_ids, str):
            return self._one(task_ids, key, default, map_indexes)
        return [self._one(tid, key, default, map_indexes) for tid in task_ids]

    def _one(self, task_id: str, key: str, default: Any, map_indexes: Any) -> Any:
        if task_id == self.task_id and key in self.pushed:
            return self.pushed[key]
        values = self._xcom.get(task_id)
        if values is None or key not in values:
            return default
        value = values[key]
        if isinstance(map_indexes, int) and isinstance(value, list):
            return value[map_indexes]
        return value

    def xcom_push(self, key: str, value: Any) -> None:
        """Store `value` under `key` for later tasks of the run (JSON-serialisable values)."""
        if not isinstance(key, str) or not key:
            raise ValueError("xcom_push needs a non-empty string key")
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"xcom_push({key!r}, ...): the value is not JSON-serialisable ({exc})") from None
        self.pushed[key] = value

    def skip(self, task_ids: Iterable[str]) -> None:
        """Ask the scheduler to mark these tasks of the run skipped (branching, short-circuit)."""
        self.skip_tasks.update(task_ids)

    def __getitem__(self, name: str) -> Any:
        # Herald's earlier context gave `ti` as a dict: ti["task_id"], ti["try_number"] still work
        if name.startswith("_") or name not in vars(self):
            raise KeyError(name)
        return getattr(self, name)

    def __repr__(self) -> str:
        return f"<TaskInstance {self.dag_id}.{self.task_id} run={self.run_id} try={self.try_number}>"


class VariableAccessor:
    """`var.value.name` and `var.json.name` in templates and the context."""

    def __init__(self, deserialize_json: bool) -> None:
        self._json = deserialize_json

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        from herald.airflow.variables import Variable

        return Variable.get(key, deserialize_json=self._json)

    def get(self, key: str, default: Any = None) -> Any:
        """The variable, or `default` when it is not defined."""
        from herald.airflow.variables import Variable

        return Variable.get(key, default, deserialize_json=self._json)


class Vars:
    """The context's `var`: `var.value` (strings) and `var.json` (parsed JSON)."""

    def __init__(self) -> None:
        self.value = VariableAccessor(False)
        self.json = VariableAccessor(True)


class ConnectionAccessor:
    """`conn.my_conn_id.host` in templates."""

    def __getattr__(self, conn_id: str) -> Any:
        if conn_id.startswith("__"):
            raise AttributeError(conn_id)
        from herald.airflow.connections import Connection

        return Connection.get(conn_id)

    def get(self, conn_id: str, default: Any = None) -> Any:
        """The connection, or `default` when it is not defined."""
        from herald.airflow.connections import Connection
        from herald.airflow.exceptions import AirflowNotFoundException

        try:
            return Connection.get(conn_id)
        except AirflowNotFoundException:
            return default


class Macros:
    """`macros.ds_add(ds, 1)`, `macros.datetime`, ... as in Airflow's templates."""

    import datetime as _datetime
    import json as _json
    import random as _random
    import time as _time
    import uuid as _uuid

    datetime = _datetime.datetime
    timedelta = _datetime.timedelta
    json = _json
    time = _time
    uuid = _uuid
    random = _random.random

    @staticmethod
    def ds_add(ds: str, days: int) -> str:
        """`ds` (YYYY-MM-DD) plus `days` days."""
        import datetime as dt

        return (dt.datetime.strptime(ds, "%Y-%m-%d") + dt.timedelta(days=days)).strftime("%Y-%m-%d")

    @staticmethod
    def ds_format(ds: str, input_format: str, output_format: str) -> str:
        """Reformat a date string."""
        import datetime as dt

        return dt.datetime.strptime(ds, input_format).strftime(output_format)


def call_with_context(
    fn: Callable[..., Any], args: Iterable[Any], kwargs: Mapping[str, Any], context: Mapping[str, Any]
) -> Any:
    """Call `fn(*args, **kwargs)`, filling parameters named like context keys from the context.

    A function with `**kwargs` receives the whole context, as Airflow passes it.
    """
    args = list(args)
    call_kwargs = dict(kwargs)
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return fn(*args, **call_kwargs)
    positional = [p.name for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    bound = set(positional[: len(args)])
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for key, value in context.items():
            if key not in call_kwargs and key not in bound and not key.startswith("_"):
                call_kwargs[key] = value
    else:
        for name, p in params.items():
            if p.kind is p.VAR_POSITIONAL or name in bound or name in call_kwargs:
                continue
            if name in context:
                call_kwargs[name] = context[name]
    return fn(*args, **call_kwargs)


# -- branching and short-circuiting -----------------------------------------------------------


def _expand_ids(dag: DAG, ids: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for tid in ids:
        if tid in dag.tasks:
            found.add(tid)
        elif tid in dag.task_groups:
            found.update(t.task_id for t in dag.task_groups[tid].all_tasks())
        else:
            raise AirflowException(
                f"'branch_task_ids' must contain only valid task_ids. Invalid tasks found: {{{tid!r}}}"
            )
    return found


def follow_branch(context: Mapping[str, Any], chosen: str | Iterable[str] | None) -> None:
    """Skip the direct downstream tasks of the running task that are not in `chosen` (task or group ids)."""
    ti: TaskInstance = context["ti"]
    dag: DAG = context["dag"]
    ids: list[str] = [] if chosen is None else [chosen] if isinstance(chosen, str) else list(chosen)
    for tid in ids:
        if not isinstance(tid, str):
            raise AirflowException(f"a branch must return task ids (strings), got {tid!r}")
    keep = _expand_ids(dag, ids)
    ti.skip(sorted(dag.downstream_of(ti.task_id) - keep))


def short_circuit(context: Mapping[str, Any], condition: Any, ignore_downstream_trigger_rules: bool) -> None:
    """A falsy condition skips every downstream task (or only the direct ones, leaving trigger rules to decide)."""
    if condition:
        return
    ti: TaskInstance = context["ti"]
    dag: DAG = context["dag"]
    print(f"Condition result is {condition!r}: skipping downstream tasks")
    ti.skip(sorted(dag.downstream_of(ti.task_id, transitive=ignore_downstream_trigger_rules)))


# -- bash -------------------------------------------------------------------------------------


def airflow_env(context: Mapping[str, Any]) -> dict[str, str]:
    """The AIRFLOW_CTX_* variables Airflow gives a bash command."""
    ti = context.get("ti")
    if ti is None:
        return {}
    return {
        "AIRFLOW_CTX_DAG_ID": ti.dag_id,
        "AIRFLOW_CTX_TASK_ID": ti.task_id,
        "AIRFLOW_CTX_DAG_RUN_ID": ti.run_id,
        "AIRFLOW_CTX_TRY_NUMBER": str(ti.try_number),
    }


#: the most of one output line held at a time: a command printing one endless line never fills memory
_LINE_CHUNK = 64 * 1024


def _relay_output(stream: IO[bytes], encoding: str) -> str:
    """Print a command's output into the task log as it comes; returns its last line (at most a chunk of it).

    Read in pieces of at most `_LINE_CHUNK` bytes, so memory stays bounded
    whatever the command prints (the log keeps its tail: `HERALD_MAX_LOG_BYTES`).
    """
    decoder = codecs.getincrementaldecoder(encoding)(errors="backslashreplace")
    last, current = "", ""
    for raw in iter(functools.partial(stream.readline, _LINE_CHUNK), b""):
        text = decoder.decode(raw)
        sys.stdout.write(text)
        current = (current + text)[-_LINE_CHUNK:]
        if current.endswith("\n"):
            last, current = current.rstrip("\n"), ""
    tail = decoder.decode(b"", final=True)
    sys.stdout.write(tail)
    current += tail
    if current:
        sys.stdout.write("\n")
        last = current
    return last


def run_bash(
    command: str,
    context: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    append_env: bool = False,
    cwd: str | None = None,
    skip_on_exit_code: int | Iterable[int] | None = 99,
    output_encoding: str = "utf-8",
) -> str:
    """Run a bash command, print its output into the task log, return its last line.

    Exit code 99 (skip_on_exit_code) skips the task; any other non-zero code fails it.
    """
    if not isinstance(command, str) or not command.strip():
        raise AirflowException(f"the bash command must be a non-empty string, got {command!r}")
    if cwd is not None and not os.path.isdir(cwd):
        raise AirflowException(f"Can not find the cwd: {cwd}")
    if env is None:
        environment = dict(os.environ)
    elif append_env:
        environment = {**os.environ, **env}
    else:
        environment = dict(env)
    environment.update(airflow_env(context))
    skip_codes = (
        set()
        if skip_on_exit_code is None
        else {skip_on_exit_code}
        if isinstance(skip_on_exit_code, int)
        else set(skip_on_exit_code)
    )
    with tempfile.TemporaryDirectory(prefix="herald_bash_") as tmp:
        print(f"Running command: {command}")
        with subprocess.Popen(
            ["bash", "-c", command],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd or tmp,
            env=environment,
        ) as proc:
            assert proc.stdout is not None
            last = _relay_output(proc.stdout, output_encoding)
            code = proc.wait()
    print(f"Command exited with return code {code}")
    if code in skip_codes:
        raise AirflowSkipException(f"Bash command returned exit code {code}. Skipping.")
    if code != 0:
        raise AirflowException(f"Bash command failed. The command returned a non-zero exit code {code}.")
    return last


# -- sensors ----------------------------------------------------------------------------------


@dataclass
class PokeReturnValue:
    """What a sensor's poke may return: whether it is done, and the value to push as its result."""

    is_done: bool
    xcom_value: Any = None

    def __bool__(self) -> bool:
        return self.is_done


def run_sensor(
    poke: Callable[[], Any],
    *,
    poke_interval: float = 60,
    timeout: float = 7 * 24 * 3600,
    soft_fail: bool = False,
    never_fail: bool = False,
    exponential_backoff: bool = False,
    max_wait: float | None = None,
) -> Any:
    """Poke until done (returns the PokeReturnValue's xcom_value), or time out.

    A timeout fails the task without retries (AirflowSensorTimeout), or skips it with
    `soft_fail`; `never_fail` also turns errors of the poke into a skip.
    """
    started = time.monotonic()
    pokes = 0
    while True:
        try:
            value = poke()
        except (AirflowSkipException, AirflowSensorTimeout):
            raise
        except (AirflowFailException, AirflowTaskTimeout) as exc:
            if soft_fail or never_fail:
                raise AirflowSkipException(f"Skipping due to soft_fail: {exc}") from exc
            raise
        except Exception as exc:
            if never_fail:
                raise AirflowSkipException(f"Skipping due to never_fail: {exc}") from exc
            raise
        pokes += 1
        if isinstance(value, PokeReturnValue):
            if value.is_done:
                return value.xcom_value
        elif value:
            return None
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            message = (
                f"Sensor has timed out; run duration of {elapsed:.1f} seconds exceeds "
                f"the specified timeout of {timeout}."
            )
            if soft_fail or never_fail:
                raise AirflowSkipException(message)
            raise AirflowSensorTimeout(message)
        interval = poke_interval * (2 ** min(pokes - 1, 16)) if exponential_backoff else poke_interval
        if max_wait is not None:
            interval = min(interval, max_wait)
        time.sleep(max(0.0, min(interval, timeout - elapsed + 0.01)))
