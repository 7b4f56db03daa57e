"""DAGs and tasks: the `@dag` and `@task` decorators and what they build."""

from __future__ import annotations

import contextvars
import functools
import inspect
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar, overload

from herald.sdk.assets import Asset, AssetAll, BaseAsset

#: parameter names that a task receives from its run rather than from its caller
CONTEXT_KEYS = frozenset(
    {
        "triggering_asset_events",
        "dag_run",
        "run_id",
        "params",
        "outlet_events",
        "ti",
        "dag",
        "task_instance",
        "logical_date",
    }
)
_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,250}$")

F = TypeVar("F", bound=Callable[..., Any])


def _seconds(value: float | timedelta | None, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{what} must be a number of seconds >= 0 or a timedelta, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class EventBatch:
    """Run policy: one run per batch of events instead of one run per event.

    A run starts when `max_events` events are queued, or when the oldest queued
    event has waited `max_wait` seconds, whichever comes first.
    """

    max_events: int = 100
    max_wait: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_events, int) or self.max_events < 1:
            raise ValueError(f"EventBatch.max_events must be an integer >= 1, got {self.max_events!r}")
        wait = _seconds(self.max_wait, "EventBatch.max_wait")
        object.__setattr__(self, "max_wait", wait)


def _many(value: XComArg | Sequence[XComArg]) -> list[XComArg]:
    items = [value] if isinstance(value, XComArg) else list(value)
    for item in items:
        if not isinstance(item, XComArg):
            raise TypeError(f"cannot set a dependency on {item!r}: it is not a task's output")
    return items


class XComArg:
    """The future return value of a task, usable as another task's argument."""

    def __init__(self, task: Task) -> None:
        self.task = task

    def __rshift__(self, other: XComArg | Sequence[XComArg]) -> XComArg | Sequence[XComArg]:
        for item in _many(other):
            item.task.upstream.add(self.task.task_id)
        return other

    def __lshift__(self, other: XComArg | Sequence[XComArg]) -> XComArg | Sequence[XComArg]:
        for item in _many(other):
            self.task.upstream.add(item.task.task_id)
        return other

    def __rrshift__(self, other: Sequence[XComArg]) -> XComArg:
        for item in other:
            self.task.upstream.add(item.task.task_id)
        return self

    def __rlshift__(self, other: Sequence[XComArg]) -> XComArg:
        for item in other:
            item.task.upstream.add(self.task.task_id)
        return self

    def __repr__(self) -> str:
        return f"XComArg({self.task.task_id!r})"


@dataclass
class Task:
    """One task of a DAG: a function with its arguments, retries and outlets."""

    task_id: str
    function: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    retry_delay: float = 0.0
    timeout: float | None = None
    outlets: list[Asset] = field(default_factory=list)
    queue: str | None = None
    upstream: set[str] = field(default_factory=set)

    def context_params(self) -> set[str]:
        """Names of context values the function asks for by parameter name."""
        params = inspect.signature(self.function).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return set(CONTEXT_KEYS)
        return {name for name in params if name in CONTEXT_KEYS}


class DAG:
    """A workflow: tasks in dependency order, and the schedule that starts its runs.

    Args:
        dag_id: unique id of the DAG.
        schedule: an `Asset`, a list of assets (all of them), an expression such
            as `(a & b) | c`, a cron string, or `None` (manual or API only).
        max_active_runs: runs beyond this number wait, queued in event order.
        batch: `EventBatch(...)` for one run per batch of events instead of per event.
        params: default run parameters, overridden by a run's `conf`.
    """

    def __init__(
        self,
        dag_id: str,
        schedule: BaseAsset | Sequence[BaseAsset] | str | None = None,
        *,
        max_active_runs: int | None = None,
        batch: EventBatch | None = None,
        params: dict[str, Any] | None = None,
        description: str | None = None,
        tags: Sequence[str] = (),
        fileloc: str | None = None,
    ) -> None:
        if not isinstance(dag_id, str) or not _ID.match(dag_id):
            raise ValueError(f"invalid dag_id {dag_id!r}: use letters, digits, _ . -")
        self.dag_id = dag_id
        self.schedule = normalise_schedule(schedule, dag_id)
        if max_active_runs is not None and (not isinstance(max_active_runs, int) or max_active_runs < 1):
            raise ValueError(f"DAG {dag_id!r}: max_active_runs must be an integer >= 1")
        if batch is not None and not isinstance(batch, EventBatch):
            raise TypeError(f"DAG {dag_id!r}: batch must be an EventBatch(...)")
        if batch is not None and not isinstance(self.schedule, BaseAsset):
            raise ValueError(f"DAG {dag_id!r}: batch= needs a schedule on assets")
        self.max_active_runs = max_active_runs
        self.batch = batch
        self.params = dict(params or {})
        self.description = description
        self.tags = list(tags)
        self.fileloc = fileloc
        self.tasks: dict[str, Task] = {}

    @property
    def cron(self) -> str | None:
        """The cron expression of a time-scheduled DAG, else None."""
        return self.schedule if isinstance(self.schedule, str) else None

    @property
    def asset_condition(self) -> BaseAsset | None:
        """The asset condition of an asset-scheduled DAG, else None."""
        return self.schedule if isinstance(self.schedule, BaseAsset) else None

    def schedule_description(self) -> Any:
        """The schedule as JSON: a cron string, an asset condition, or None."""
        if isinstance(self.schedule, BaseAsset):
            return self.schedule.describe()
        return self.schedule

    def add_task(self, task: Task) -> None:
        """Add a task, renaming it `name__N` when its id is already taken, as Airflow does."""
        base, n = task.task_id, 1
        while task.task_id in self.tasks:
            task.task_id = f"{base}__{n}"
            n += 1
        self.tasks[task.task_id] = task

    def outlets(self) -> list[Asset]:
        """Every asset a task of this DAG emits events for."""
        seen: dict[str, Asset] = {}
        for task in self.tasks.values():
            for asset in task.outlets:
                seen.setdefault(asset.name, asset)
        return list(seen.values())

    def validate(self) -> None:
        """Check the task graph: known upstream ids and no cycle."""
        for task in self.tasks.values():
            for up in task.upstream:
                if up not in self.tasks:
                    raise ValueError(f"DAG {self.dag_id!r}: task {task.task_id!r} depends on unknown task {up!r}")
        state: dict[str, int] = {}

        def visit(tid: str, path: list[str]) -> None:
            if state.get(tid) == 1:
                raise ValueError(f"DAG {self.dag_id!r} has a cycle: {' -> '.join([*path, tid])}")
            if state.get(tid) == 2:
                return
            state[tid] = 1
            for up in sorted(self.tasks[tid].upstream):
                visit(up, [*path, tid])
            state[tid] = 2

        for tid in self.tasks:
            visit(tid, [])

    def __repr__(self) -> str:
        return f"<DAG {self.dag_id}>"


def normalise_schedule(schedule: BaseAsset | Sequence[BaseAsset] | str | None, dag_id: str) -> BaseAsset | str | None:
    """Turn the user's `schedule=` into an asset condition, a cron string or None."""
    if schedule is None or isinstance(schedule, BaseAsset):
        return schedule
    if isinstance(schedule, str):
        from croniter import croniter

        if not croniter.is_valid(schedule):
            raise ValueError(
                f"DAG {dag_id!r}: schedule {schedule!r} is not a valid cron expression "
                f"(for example '*/5 * * * *' or '@daily')"
            )
        return schedule
    if isinstance(schedule, list | tuple):
        items = list(schedule)
        if not items:
            raise ValueError(f"DAG {dag_id!r}: schedule=[] is empty; use None for manual runs")
        for item in items:
            if not isinstance(item, BaseAsset):
                raise TypeError(f"DAG {dag_id!r}: schedule lists {item!r}, which is not an Asset")
        return items[0] if len(items) == 1 else AssetAll(*items)
    raise TypeError(
        f"DAG {dag_id!r}: schedule must be an Asset, a list of assets, an asset expression, "
        f"a cron string or None, got {type(schedule).__name__}"
    )


# The DAG being built by a running `@dag` function, and the DAGs a file load collects.
_building: contextvars.ContextVar[DAG | None] = contextvars.ContextVar("herald_building", default=None)
_collected: contextvars.ContextVar[list[DAG] | None] = contextvars.ContextVar("herald_collected", default=None)


@contextmanager
def collect_dags() -> Iterator[list[DAG]]:
    """Collect every DAG built while the block runs (used by the DAG loader)."""
    found: list[DAG] = []
    token = _collected.set(found)
    try:
        yield found
    finally:
        _collected.reset(token)


@overload
def task(python_callable: F) -> Callable[..., XComArg]: ...
@overload
def task(
    python_callable: None = None,
    *,
    task_id: str | None = None,
    retries: int = 0,
    retry_delay: float | timedelta = 0.0,
    timeout: float | timedelta | None = None,
    execution_timeout: float | timedelta | None = None,
    outlets: Sequence[Asset] = (),
    queue: str | None = None,
) -> Callable[[F], Callable[..., XComArg]]: ...


def task(
    python_callable: Callable[..., Any] | None = None,
    *,
    task_id: str | None = None,
    retries: int = 0,
    retry_delay: float | timedelta = 0.0,
    timeout: float | timedelta | None = None,
    execution_timeout: float | timedelta | None = None,
    outlets: Sequence[Asset] = (),
    queue: str | None = None,
) -> Any:
    """Make a function a task of the DAG being defined.

    Called inside a `@dag` function, the decorated function adds a task and
    returns an `XComArg` standing for its return value.

    Args:
        task_id: defaults to the function's name.
        retries: how many times a failed task is tried again.
        retry_delay: seconds (or a timedelta) between tries.
        timeout: seconds after which a running try is killed and fails
            (`execution_timeout` is accepted as Airflow's name for it).
        outlets: assets that get an event when the task succeeds.
        queue: the worker queue the task runs on (Celery executor).
    """
    if not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    delay = _seconds(retry_delay, "retry_delay") or 0.0
    limit = _seconds(timeout if timeout is not None else execution_timeout, "timeout")
    for asset in outlets:
        if not isinstance(asset, Asset):
            raise TypeError(f"outlets must be Assets, got {asset!r}")

    def decorate(fn: Callable[..., Any]) -> Callable[..., XComArg]:
        if not callable(fn):
            raise TypeError(f"@task decorates a function, got {fn!r}")

        @functools.wraps(fn)
        def add_to_dag(*args: Any, **kwargs: Any) -> XComArg:
            current = _building.get()
            if current is None:
                raise RuntimeError(
                    f"task {fn.__name__!r} was called outside a @dag function; call it inside "
                    f"one, or call {fn.__name__}.function(...) to run the plain function"
                )
            new = Task(
                task_id=task_id or fn.__name__,
                function=fn,
                args=args,
                kwargs=kwargs,
                retries=retries,
                retry_delay=delay,
                timeout=limit,
                outlets=list(outlets),
                queue=queue,
            )
            for value in [*args, *kwargs.values()]:
                if isinstance(value, XComArg):
                    new.upstream.add(value.task.task_id)
            current.add_task(new)
            return XComArg(new)

        add_to_dag.function = fn  # type: ignore[attr-defined]
        return add_to_dag

    if python_callable is not None:
        return decorate(python_callable)
    return decorate


def dag(
    dag_function: Callable[..., Any] | None = None,
    *,
    dag_id: str | None = None,
    schedule: BaseAsset | Sequence[BaseAsset] | str | None = None,
    max_active_runs: int | None = None,
    batch: EventBatch | None = None,
    params: dict[str, Any] | None = None,
    description: str | None = None,
    tags: Sequence[str] = (),
) -> Any:
    """Make a function define a DAG: calling it builds the DAG and registers it.

    See `DAG` for the arguments; `dag_id` defaults to the function's name.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., DAG]:
        @functools.wraps(fn)
        def build(*args: Any, **kwargs: Any) -> DAG:
            new = DAG(
                dag_id or fn.__name__,
                schedule,
                max_active_runs=max_active_runs,
                batch=batch,
                params=params,
                description=description or (inspect.getdoc(fn) or None),
                tags=tags,
                fileloc=inspect.getsourcefile(fn),
            )
            token = _building.set(new)
            try:
                fn(*args, **kwargs)
            finally:
                _building.reset(token)
            new.validate()
            found = _collected.get()
            if found is not None:
                found.append(new)
            return new

        return build

    if dag_function is not None:
        return decorate(dag_function)
    return decorate
