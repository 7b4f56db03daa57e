"""Dynamic task mapping at run time: one try per map index, as Airflow expands a mapped task.

A mapped task (`.expand()`, `.expand_kwargs()`, `.partial()`) starts like any task: one
try with map index -1. When its trigger rule lets it run, the scheduler expands it,
here, from the literal values and the results of its upstream tasks:

- n values (the product of the named lists for `expand`, the number of dicts for
  `expand_kwargs`): the try becomes map index 0 and n-1 more are created, all
  `scheduled`; each runs with its own arguments (the worker picks the n-th combination);
- no value: the task is `skipped`, as in Airflow;
- an upstream value that is missing (the upstream task ended without a result):
  `upstream_failed`;
- more than `max_map_length` values, or a value that is not a list or a dict: `failed`,
  with the reason as its error.

An unmapped task whose result a mapped task expands over is checked when it
succeeds (`check_source`): as in Airflow, it fails when it returns None, a value that
is not a list or a dict, or one longer than `max_map_length`.

Downstream tasks see a mapped task's results as one list in map index order (`run_xcoms`),
as Airflow's lazy sequence of the map indexes' XComs (indexes without a value left out).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from herald.sdk.dag import DAG, RETURN_KEY, Task, XComArg, xcom_args_in
from herald.store import tries as store_tries
from herald.store.states import TryState

#: Airflow's default of [core] max_map_length
MAX_MAP_LENGTH = 1024
_MISSING = object()


class _Missing(Exception):
    """An upstream task the mapped task expands over left no value."""


class _Invalid(Exception):
    """The values cannot be expanded (wrong type, too many)."""


@dataclass(frozen=True)
class Expansion:
    """How a mapped task expands: `count` map indexes, or the state it ends in and why."""

    count: int = 0
    state: TryState | None = None
    error: str | None = None


def run_xcoms(dags: dict[str, DAG], rows: Iterable[Any]) -> dict[int, dict[str, dict[str, Any]]]:
    """Every XCom of each run, by task id and key, from its succeeded tries (`store.tries.successes`).

    An unmapped task's values are its own; a mapped task's values are lists, one item per
    map index that produced a value, in map index order.
    """
    out: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    mapped_rows: dict[tuple[int, str], list[Any]] = defaultdict(list)
    for r in rows:
        run_pk = int(r.run_pk)
        if int(r.map_index) < 0:
            out[run_pk][r.task_id] = {**(r.xcom or {}), RETURN_KEY: r.result}
        else:
            mapped_rows[(run_pk, r.task_id)].append(r)
    for (run_pk, task_id), items in mapped_rows.items():
        items.sort(key=lambda r: int(r.map_index))
        values: dict[str, Any] = {RETURN_KEY: [r.result for r in items if r.result is not None]}
        keys = {k for r in items for k in (r.xcom or {})}
        for key in sorted(keys - {RETURN_KEY}):
            values[key] = [r.xcom[key] for r in items if r.xcom and key in r.xcom]
        out[run_pk][task_id] = values
    return out


def _resolve(value: Any, xcom: dict[str, dict[str, Any]]) -> Any:
    if not isinstance(value, XComArg):
        return value
    found = xcom.get(value.task.task_id, {}).get(value.key, _MISSING)
    if found is _MISSING or found is None:
        raise _Missing(
            f"task {value.task.task_id!r} left no value{'' if value.key == RETURN_KEY else f' under {value.key!r}'}"
        )
    try:
        return value.apply(found)
    except TypeError as exc:
        raise _Invalid(str(exc)) from None


def _length(task: Task, xcom: dict[str, dict[str, Any]]) -> int:
    """The number of map indexes, counted without building the combinations."""
    assert task.mapped is not None
    if task.mapped.kind == "expand_kwargs":
        items = _resolve(task.mapped.value, xcom)
        if not isinstance(items, list | tuple):
            raise _Invalid(f"expand_kwargs needs a list of dicts, got {type(items).__name__}")
        for item in items:
            if not isinstance(item, dict | XComArg):
                raise _Invalid(f"expand_kwargs needs a list of dicts, got an item {item!r}")
        return len(items)
    total = 1
    for name, raw in task.mapped.value.items():
        values = _resolve(raw, xcom)
        if not isinstance(values, list | tuple | dict | set):
            raise _Invalid(f"expand({name}=...) needs a list or a dict, got {type(values).__name__}")
        total *= len(values)
    return total


def expansion(task: Task, xcom: dict[str, dict[str, Any]], max_length: int = MAX_MAP_LENGTH) -> Expansion:
    """How the mapped `task` expands, given its run's XComs (task id -> key -> value)."""
    if task.mapped is None:
        raise ValueError(f"task {task.task_id!r} is not mapped")
    try:
        count = _length(task, xcom)
    except _Missing as exc:
        return Expansion(state=TryState.UPSTREAM_FAILED, error=f"cannot expand {task.task_id!r}: {exc}")
    except _Invalid as exc:
        return Expansion(state=TryState.FAILED, error=f"cannot expand {task.task_id!r}: {exc}")
    if count == 0:
        return Expansion(state=TryState.SKIPPED, error=None)
    if count > max_length:
        return Expansion(
            state=TryState.FAILED,
            error=f"task {task.task_id!r} would expand to {count} map indexes, more than max_map_length="
            f"{max_length}; map over fewer values (batch them), or raise HERALD_MAX_MAP_LENGTH",
        )
    return Expansion(count=count)


def mapped_dependants(dag: DAG, task_id: str) -> list[tuple[Task, XComArg]]:
    """The mapped tasks that expand over a value of `task_id`, with the value they use."""
    found = []
    for task in dag.tasks.values():
        if task.mapped is None:
            continue
        for arg in xcom_args_in(task.mapped.value):
            if arg.task.task_id == task_id:
                found.append((task, arg))
    return found


def check_source(
    dag: DAG, task_id: str, result: Any, pushed: dict[str, Any] | None, max_length: int = MAX_MAP_LENGTH
) -> str | None:
    """Why a succeeded unmapped task must fail instead (a mapped task cannot expand over its value), or None."""
    for mapped, arg in mapped_dependants(dag, task_id):
        value = result if arg.key == RETURN_KEY else (pushed or {}).get(arg.key)
        where = f"task {mapped.task_id!r} maps over it (.expand())"
        if value is None:
            what = "returned None" if arg.key == RETURN_KEY else f"pushed no value under {arg.key!r}"
            return f"did not push XCom for task mapping: task {task_id!r} {what}, and {where}"
        if not isinstance(value, list | dict):
            return f"unmappable return type {type(value).__name__!r}: {where}; return a list or a dict"
        if len(value) > max_length:
            return (
                f"unmappable return value length: {len(value)} > {max_length} (max_map_length): {where}; "
                f"return fewer items (batch them), or raise HERALD_MAX_MAP_LENGTH"
            )
    return None


@dataclass
class Expanded:
    """What expanding a pass's ready tries did: tries to queue, runs whose tries ended without running."""

    ready: list[int] = field(default_factory=list)
    ended_runs: set[int] = field(default_factory=set)


def expand_ready(
    conn: Connection, dags: dict[str, DAG], ti_ids: list[int], now: datetime, max_length: int = MAX_MAP_LENGTH
) -> Expanded:
    """Expand the unexpanded mapped tries among tries about to be queued; the others pass through.

    One read of the tries and one of the runs' results for the batch.
    """
    out = Expanded()
    if not ti_ids:
        return out
    rows = store_tries.read(conn, ti_ids)
    todo = []
    for ti_id in ti_ids:
        row = rows.get(ti_id)
        dag = dags.get(row.dag_id) if row is not None else None
        task = dag.tasks.get(row.task_id) if dag is not None and row is not None else None
        if row is not None and task is not None and task.mapped is not None and int(row.map_index) < 0:
            todo.append((row, task))
        else:
            out.ready.append(ti_id)
    if not todo:
        return out
    xcoms = run_xcoms(dags, store_tries.successes(conn, {int(row.run_pk) for row, _ in todo}))
    ended: dict[tuple[TryState, str | None], list[int]] = defaultdict(list)
    for row, task in todo:
        found = expansion(task, xcoms.get(int(row.run_pk), {}), max_length)
        if found.state is not None:
            ended[(found.state, found.error)].append(int(row.id))
            out.ended_runs.add(int(row.run_pk))
        else:
            out.ready += store_tries.expand(conn, int(row.id), found.count)
    for (state, error), ids in ended.items():
        store_tries.end_unstarted(conn, state, ids, error, now)
    return out
