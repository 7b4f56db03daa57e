"""DAGs and tasks: `DAG`, the `@dag` and `@task` decorators, dependencies and what they build."""

from __future__ import annotations

import contextvars
import inspect
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from herald.sdk.assets import Asset, AssetAlias, AssetAll, BaseAsset
from herald.sdk.flow import Debounce, FlowControl
from herald.sdk.ticks import Ticks
from herald.sdk.timetables import (
    AssetAndTimeSchedule,
    AssetTriggeredTimetable,
    CronTriggerTimetable,
    DeltaTriggerTimetable,
)
from herald.sdk.trigger_rule import TriggerRule

#: parameter names that a task receives from its run rather than from its caller
CONTEXT_KEYS = frozenset(
    {
        "triggering_asset_events",
        "dag_run",
        "run_id",
        "params",
        "outlet_events",
        "inlet_events",
        "ti",
        "dag",
        "task",
        "task_instance",
        "logical_date",
        "data_interval_start",
        "data_interval_end",
        "ds",
        "ds_nodash",
        "ts",
        "ts_nodash",
        "ts_nodash_with_tz",
        "var",
        "conn",
        "macros",
        "map_index",
        "templates_dict",
        "run_after",
    }
)
_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,250}$")
RETURN_KEY = "return_value"

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


#: Airflow's `batch_asset_events=True`: a run takes every event queued when the scheduler looks
ALL_QUEUED = EventBatch(max_events=2**31 - 1, max_wait=0.0)


# -- dependencies ----------------------------------------------------------------------------


def edge_tasks(obj: Any, side: str) -> list[Task]:
    """The tasks an object stands for on one side of `>>`: "roots" (downstream end) or "leaves"."""
    if isinstance(obj, Task):
        return [obj]
    getter = getattr(obj, "_herald_edge_tasks", None)
    if getter is not None:
        found: list[Task] = getter(side)
        return found
    if isinstance(obj, list | tuple | set | frozenset):
        return [t for item in obj for t in edge_tasks(item, side)]
    raise TypeError(f"cannot set a dependency on {obj!r}: it is not a task's output, an operator or a task group")


def set_dependency(upstream: Any, downstream: Any) -> None:
    """Make every leaf of `upstream` an upstream task of every root of `downstream`."""
    receive = getattr(downstream, "_herald_receive_upstream", None)
    leaves = edge_tasks(upstream, "leaves")
    if receive is not None:  # an edge label remembers what points at it
        receive(leaves)
        return
    roots = edge_tasks(downstream, "roots")
    for down in roots:
        for up in leaves:
            if up is not down:
                down.upstream.add(up.task_id)


class DependencyMixin:
    """`a >> b`, `a << b`, `[a, b] >> c` and `c << [a, b]` for outputs, operators and groups."""

    def __rshift__(self, other: Any) -> Any:
        set_dependency(self, other)
        return other

    def __lshift__(self, other: Any) -> Any:
        set_dependency(other, self)
        return other

    def __rrshift__(self, other: Any) -> Any:
        set_dependency(other, self)
        return self

    def __rlshift__(self, other: Any) -> Any:
        set_dependency(self, other)
        return self


class XComArg(DependencyMixin):
    """The future return value of a task (or one of its XCom keys), usable as another task's argument."""

    def __init__(self, task: Task, key: str = RETURN_KEY) -> None:
        self.task = task
        self.key = key
        self.transforms: list[Callable[[Any], Any]] = []

    def __getitem__(self, key: str) -> XComArg:
        """One key of a `multiple_outputs=True` task's result."""
        return XComArg(self.task, key)

    def _herald_edge_tasks(self, side: str) -> list[Task]:
        return [self.task]

    def map(self, fn: Callable[[Any], Any]) -> XComArg:
        """The value with `fn` applied to each item (for `.expand()`), as Airflow's `XComArg.map`."""
        if not callable(fn):
            raise TypeError(f"XComArg.map() needs a callable, got {fn!r}")
        mapped = XComArg(self.task, self.key)
        mapped.transforms = [*self.transforms, fn]
        return mapped

    def apply(self, value: Any) -> Any:
        """Apply the `.map()` functions to a resolved value."""
        for fn in self.transforms:
            if isinstance(value, dict):
                value = [fn(item) for item in value.items()]
            elif isinstance(value, list | tuple):
                value = [fn(item) for item in value]
            else:
                raise TypeError(f"XComArg.map() needs a list or a dict, got {type(value).__name__}")
        return value

    @property
    def operator(self) -> Any:
        """The operator (or TaskFlow task) producing this value."""
        return self.task.operator if self.task.operator is not None else self.task

    def __iter__(self) -> Iterator[Any]:
        raise TypeError("a task's output is not iterable while the DAG is defined; map over it with .expand()")

    def __repr__(self) -> str:
        return (
            f"XComArg({self.task.task_id!r})"
            if self.key == RETURN_KEY
            else f"XComArg({self.task.task_id!r}, {self.key!r})"
        )


class DagParam:
    """A `@dag` function's parameter: a run parameter, resolved from the run's params when a task runs."""

    def __init__(self, name: str, default: Any) -> None:
        self.name = name
        self.default = default

    def __repr__(self) -> str:
        return f"DagParam({self.name!r})"


def xcom_args_in(value: Any) -> list[XComArg]:
    """Every `XComArg` inside a value (lists, tuples, sets and dicts are searched)."""
    if isinstance(value, XComArg):
        return [value]
    if isinstance(value, list | tuple | set | frozenset):
        return [x for v in value for x in xcom_args_in(v)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in xcom_args_in(v)]
    return []


@dataclass
class MappedInput:
    """What a mapped task expands over: `expand(name=values)` or `expand_kwargs(list_of_dicts)`.

    The values may be literal lists (dicts) or a task's output (an `XComArg`) resolved when
    the run reaches the task. The scheduler creates one try per combination (`map_index`).
    """

    kind: str  # "expand" (cross product of every named list) or "expand_kwargs"
    value: Any

    def combinations(self, resolve: Callable[[Any], Any]) -> list[dict[str, Any]]:
        """Every combination of arguments, in map index order (resolve turns XComArgs into values)."""
        if self.kind == "expand_kwargs":
            items = resolve(self.value)
            if not isinstance(items, list | tuple):
                raise TypeError(f"expand_kwargs needs a list of dicts, got {type(items).__name__}")
            out = []
            for item in items:
                item = resolve(item)
                if not isinstance(item, dict):
                    raise TypeError(f"expand_kwargs needs a list of dicts, got an item {item!r}")
                out.append({k: resolve(v) for k, v in item.items()})
            return out
        names = list(self.value)
        lists = []
        for name in names:
            values = resolve(self.value[name])
            if isinstance(values, dict):
                values = list(values.items())
            if not isinstance(values, list | tuple | set):
                raise TypeError(f"expand({name}=...) needs a list or a dict, got {type(values).__name__}")
            lists.append(list(values))
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*lists)]

    def length(self, resolve: Callable[[Any], Any]) -> int:
        """How many tries the mapped task gets (the scheduler's number of map indexes)."""
        return len(self.combinations(resolve))


def expansion_count(task: Task, xcom: dict[str, dict[str, Any]]) -> int:
    """How many map indexes a mapped task gets, given the run's XComs (task id -> key -> value).

    For the scheduler: create this many tries (map_index 0..n-1) once the mapped task's
    upstream tasks have finished; 0 means the task is skipped, as in Airflow.
    """
    if task.mapped is None:
        raise ValueError(f"task {task.task_id!r} is not mapped")

    def resolve(value: Any) -> Any:
        if isinstance(value, XComArg):
            return value.apply(xcom.get(value.task.task_id, {}).get(value.key))
        return value

    return task.mapped.length(resolve)


@dataclass(eq=False)
class Task(DependencyMixin):
    """One task of a DAG: what it runs, its arguments, retries, trigger rule and outlets.

    `kind` says how the worker runs it: "python" calls `function`; "branch",
    "short_circuit", "bash" and "sensor" are the TaskFlow variants of Airflow's
    operators; "operator" runs `operator.execute(context)`.
    """

    task_id: str
    function: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    retry_delay: float = 0.0
    timeout: float | None = None
    outlets: list[Asset | AssetAlias] = field(default_factory=list)
    queue: str | None = None
    upstream: set[str] = field(default_factory=set)
    #: when the task runs, given how its upstream tasks ended (a `TriggerRule` value)
    trigger_rule: str = "all_success"
    kind: str = "python"
    options: dict[str, Any] = field(default_factory=dict)
    operator: Any = None
    multiple_outputs: bool = False
    do_xcom_push: bool = True
    mapped: MappedInput | None = None
    inlets: list[Any] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    callbacks: dict[str, Any] = field(default_factory=dict)
    owner: str | None = None
    doc_md: str | None = None
    dag: DAG | None = None

    def __post_init__(self) -> None:
        try:
            self.trigger_rule = TriggerRule(self.trigger_rule).value
        except ValueError:
            valid = ", ".join(r.value for r in TriggerRule)
            raise ValueError(
                f"task {self.task_id!r}: unknown trigger_rule {self.trigger_rule!r}; valid: {valid}"
            ) from None

    def context_params(self) -> set[str]:
        """Names of context values the function asks for by parameter name."""
        params = inspect.signature(self.function).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return set(CONTEXT_KEYS)
        return {name for name in params if name in CONTEXT_KEYS}

    @property
    def downstream_task_ids(self) -> set[str]:
        """Ids of the tasks that list this one as upstream."""
        if self.dag is None:
            return set()
        return {tid for tid, t in self.dag.tasks.items() if self.task_id in t.upstream}

    @property
    def upstream_task_ids(self) -> set[str]:
        """Ids of this task's upstream tasks."""
        return set(self.upstream)

    def _herald_edge_tasks(self, side: str) -> list[Task]:
        return [self]

    def __hash__(self) -> int:
        return id(self)


# -- task arguments shared by operators and TaskFlow --------------------------------------------

#: accepted, and ignoring them cannot change which tasks run or what they compute
IGNORED_TASK_ARGS: dict[str, str] = {
    "pool": "pools only limit how many tries run at once; Herald's worker count does that",
    "pool_slots": "pools only limit how many tries run at once",
    "priority_weight": "it only orders queued tries",
    "weight_rule": "it only orders queued tries",
    "email": "Herald sends no e-mail; use on_failure_callback",
    "email_on_failure": "Herald sends no e-mail; use on_failure_callback",
    "email_on_retry": "Herald sends no e-mail; use on_retry_callback",
    "retry_exponential_backoff": "retries wait retry_delay each time",
    "max_retry_delay": "retries wait retry_delay each time",
    "executor_config": "Herald's executors take no per-task configuration",
    "executor": "tasks run on the deployment's executor",
    "sla": "SLAs were removed in Airflow 3",
    "resources": "it is not enforced",
    "max_active_tis_per_dag": "it only limits concurrency",
    "max_active_tis_per_dagrun": "it only limits concurrency",
    "map_index_template": "mapped tries are shown with their map index",
    "run_as_user": "tries run as the worker's user",
    "owner_links": "it only decorates the UI",
    "task_display_name": "tasks are shown by id",
    "show_return_value_in_logs": "return values are stored as results, not logged",
    "deferrable": "sensors and waits run in the worker, in poke mode",
}
#: rejected when set to anything but their default: ignoring them would change what runs
REJECTED_TASK_ARGS: dict[str, str] = {
    "depends_on_past": "Herald runs are independent; gate the task with a sensor or a branch on the previous run",
    "wait_for_downstream": "Herald runs are independent; use max_active_runs=1 to serialise runs",
    "ignore_first_depends_on_past": "depends_on_past is not supported",
    "wait_for_past_depends_before_skipping": "depends_on_past is not supported",
}
#: Airflow's defaults of the ignored arguments: setting one to its default earns no warning
_IGNORED_DEFAULTS: dict[str, Any] = {
    "pool_slots": 1,
    "priority_weight": 1,
    "weight_rule": "downstream",
    "email_on_failure": True,
    "email_on_retry": True,
    "show_return_value_in_logs": True,
}
CALLBACKS = (
    "on_execute_callback",
    "on_success_callback",
    "on_failure_callback",
    "on_retry_callback",
    "on_skipped_callback",
)
_HANDLED_TASK_ARGS = {
    "task_id",
    # Airflow 2 DAGs put the DAG's start_date in default_args; the DAG takes it from there
    "start_date",
    "end_date",
    "retries",
    "retry_delay",
    "timeout",
    "execution_timeout",
    "trigger_rule",
    "outlets",
    "inlets",
    "queue",
    "owner",
    "doc",
    "doc_md",
    "doc_json",
    "doc_yaml",
    "doc_rst",
    "params",
    "multiple_outputs",
    "do_xcom_push",
    *CALLBACKS,
}
TASK_ARGS = frozenset(_HANDLED_TASK_ARGS | set(IGNORED_TASK_ARGS) | set(REJECTED_TASK_ARGS))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple | set):
        return list(value)
    return [value]


def task_fields(options: dict[str, Any], where: str, warn: Callable[[str], None]) -> dict[str, Any]:
    """Turn Airflow's task arguments into `Task` fields; warn about ignored ones, refuse harmful ones."""
    fields: dict[str, Any] = {}
    for name, value in options.items():
        if name in REJECTED_TASK_ARGS and value:
            raise ValueError(f"{where}: {name}={value!r} is not supported by Herald: {REJECTED_TASK_ARGS[name]}")
        ignored = name in IGNORED_TASK_ARGS and value not in (None, False, (), [], {}, "")
        if ignored and (name not in _IGNORED_DEFAULTS or _IGNORED_DEFAULTS[name] != value):
            # one warning per argument and value, however many tasks share it through default_args
            warn(f"task argument {name}={value!r} is accepted but has no effect ({IGNORED_TASK_ARGS[name]})")
    retries = options.get("retries")
    if retries is not None:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"{where}: retries must be an integer >= 0, got {retries!r}")
        fields["retries"] = retries
    if options.get("retry_delay") is not None:
        fields["retry_delay"] = _seconds(options["retry_delay"], f"{where}: retry_delay") or 0.0
    timeout = options.get("timeout", options.get("execution_timeout"))
    if timeout is not None:
        fields["timeout"] = _seconds(timeout, f"{where}: execution_timeout")
    rule = options.get("trigger_rule")
    if rule is not None:
        rule = str(rule.value if isinstance(rule, TriggerRule) else rule)
        if not TriggerRule.is_valid(rule):
            raise ValueError(
                f"{where}: trigger_rule={rule!r} is not a trigger rule; use one of {sorted(TriggerRule.all_triggers())}"
            )
        fields["trigger_rule"] = rule
    if options.get("outlets") is not None:
        outlets = _as_list(options["outlets"])
        for asset in outlets:
            if not isinstance(asset, Asset | AssetAlias):
                raise TypeError(f"{where}: outlets must be Assets or AssetAliases, got {asset!r}")
        fields["outlets"] = outlets
    if options.get("inlets") is not None:
        fields["inlets"] = _as_list(options["inlets"])
    if options.get("queue") is not None:
        fields["queue"] = str(options["queue"])
    for name in ("owner", "multiple_outputs", "do_xcom_push"):
        if options.get(name) is not None:
            fields[name] = options[name]
    doc = next((options[k] for k in ("doc_md", "doc", "doc_rst", "doc_json", "doc_yaml") if options.get(k)), None)
    if doc is not None:
        fields["doc_md"] = doc
    if options.get("params"):
        fields["params"] = dict(options["params"])
    callbacks = {}
    for name in CALLBACKS:
        value = options.get(name)
        if value is None:
            continue
        funcs = _as_list(value)
        for fn in funcs:
            if not callable(fn):
                raise TypeError(f"{where}: {name} must be a callable (or a list of them), got {fn!r}")
        callbacks[name] = funcs
    if callbacks:
        fields["callbacks"] = callbacks
    return fields


# -- the DAG -------------------------------------------------------------------------------------

#: DAG arguments accepted with a warning: ignoring them cannot change what runs
IGNORED_DAG_ARGS: dict[str, str] = {
    "access_control": "Herald's API tokens decide who may act on a DAG",
    "default_view": "it only picks the UI's first page",
    "orientation": "it only lays out the UI's graph",
    "owner_links": "it only decorates the UI",
    "dag_display_name": "DAGs are shown by id",
    "auto_register": "every DAG of a DAG file is registered",
    "fail_stop": "",
    "sla_miss_callback": "SLAs were removed in Airflow 3",
    "disable_bundle_versioning": "Herald reloads DAG files as they change",
    "max_consecutive_failed_dag_runs": "",
}
#: DAG arguments refused: ignoring them would change what runs (argument -> what to use instead)
REJECTED_DAG_ARGS: dict[str, str] = {
    "timetable": "schedule= (it takes timetables in Airflow 3)",
    "schedule_interval": "schedule= (Airflow 3's name)",
    "fail_stop": "trigger_rule on the downstream tasks",
    "fail_fast": "trigger_rule on the downstream tasks",
    "max_consecutive_failed_dag_runs": "a task with trigger_rule='one_failed' that pauses the DAG through the API",
    "dag_run_conf_overrides_params": "",
}


class DAG(DependencyMixin):
    """A workflow: tasks in dependency order, and the schedule that starts its runs.

    Use it as Airflow's: `with DAG("id", schedule=...) as dag:` and create operators or
    call TaskFlow tasks inside, or decorate a function with `@dag`.

    Args:
        dag_id: unique id of the DAG.
        schedule: an `Asset`, a list of assets (all of them), an expression such
            as `(a & b) | c`, a cron string, or `None` (manual or API only).
        start_date: cron runs start at the first tick at or after it.
        end_date: no cron run after it.
        catchup: cron schedules: run every tick between start_date and now (default False).
        default_args: task arguments applied to every task that does not set them.
        max_active_runs: runs beyond this number wait, queued in event order.
        max_active_tasks: tries of this DAG running at once, across its runs.
        dagrun_timeout: a run still running after this long fails.
        is_paused_upon_creation: the DAG starts paused when first seen.
        batch: `EventBatch(...)` for one run per batch of events instead of per event.
        key: flow control (see the README's "Flow control"): a JMESPath expression on the
            payload of the event that makes a run (`extra["payload"]`, or the whole
            `extra` of an event emitted by a task or the API); not a callable, which
            would run inside the scheduler. Its value is the run's key; the rules below hold per key. A DAG with
            key rules and no `key=` is one key.
        max_active_runs_per_key: runs of one key running at once. Runs of one key start
            in the order of their events and never overlap beyond this; other keys run
            in parallel. Default: no limit (1 with `on_new_event` skip or cancel_running).
        on_new_event: what a new run does when its key already has its
            `max_active_runs_per_key` runs: "queue" (wait its turn, the default),
            "skip" (end `skipped` at once) or "cancel_running" (the running run of its
            key is stopped and ends `cancelled`; the new run starts).
        priority: a JMESPath expression on the payload giving a number:
            queued runs start highest first, within `max_active_runs` and the key's
            limits (a key's runs of equal priority in event order).
        throttle: `(runs, seconds)`: at most that many runs of one key start per period;
            the others stay queued (`held_by` "throttle") until the period allows.
        rate_limit: `(runs, seconds)`: beyond that many runs of one key started per
            period, new runs end `skipped` (`held_by` "rate_limit"), counted, never dropped.
        debounce: seconds, or `Debounce(seconds, max_wait=..., keep="all" | "last")`: one
            run per burst of events of one key, released once the key has been quiet
            that long (or `max_wait` after the burst began), with the burst's events.
        cancel_on: an `Asset` (or a list): an event of it cancels the queued and running
            runs of its key made by events before it (queued runs end `cancelled` without
            starting; running ones have their tasks stopped). Needs `key=`; the
            cancelling event's key is `key=` on its payload, or `cancel_key=`.
        cancel_key: a JMESPath expression giving a `cancel_on=` event's key, when its
            payload names the key differently from the events that make runs.
        params: default run parameters (values or `Param`), overridden by a run's `conf`.
        description, doc_md, tags, owner: shown in listings and the UI.
        template_searchpath, user_defined_macros, user_defined_filters,
        render_template_as_native_obj, template_undefined, jinja_environment_kwargs:
            Jinja templating of operator fields, as in Airflow.
        on_success_callback, on_failure_callback: a callable (or a list of them)
            called with a context once when a run ends succeeded or failed, as
            Airflow's DAG callbacks: in a child process of a scheduler, never in
            the scheduler itself; one that raises or hangs is recorded with the run.

    Flow control, for example (the README's "Flow control" has both in full)::

        # each device's readings one at a time and in order, every device in parallel
        DAG("evaluate_reading", schedule=[readings], key="device_id", max_active_runs_per_key=1)
        # one load per customer after a burst of uploads, paying customers first
        DAG("customer_etl", schedule=[uploads], key="customer", max_active_runs_per_key=1,
            debounce=Debounce(30, max_wait=600), priority="tier")
    """

    def __init__(
        self,
        dag_id: str,
        schedule: BaseAsset | Sequence[BaseAsset] | str | Timetable | None = None,
        *,
        description: str | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        catchup: bool = False,
        default_args: dict[str, Any] | None = None,
        max_active_runs: int | None = None,
        max_active_tasks: int | None = None,
        dagrun_timeout: timedelta | float | None = None,
        is_paused_upon_creation: bool | None = None,
        batch: EventBatch | None = None,
        key: str | Callable[[Any], Any] | None = None,
        max_active_runs_per_key: int | None = None,
        on_new_event: str = "queue",
        priority: str | Callable[[Any], Any] | None = None,
        throttle: tuple[int, float | timedelta] | None = None,
        rate_limit: tuple[int, float | timedelta] | None = None,
        debounce: Debounce | float | timedelta | None = None,
        cancel_on: Asset | Sequence[Asset] | None = None,
        cancel_key: str | None = None,
        params: dict[str, Any] | None = None,
        doc_md: str | None = None,
        tags: Iterable[str] = (),
        owner: str | None = None,
        template_searchpath: str | Iterable[str] | None = None,
        user_defined_macros: dict[str, Any] | None = None,
        user_defined_filters: dict[str, Callable[..., Any]] | None = None,
        render_template_as_native_obj: bool = False,
        template_undefined: type | None = None,
        jinja_environment_kwargs: dict[str, Any] | None = None,
        on_success_callback: Callable[[dict[str, Any]], Any] | list[Callable[[dict[str, Any]], Any]] | None = None,
        on_failure_callback: Callable[[dict[str, Any]], Any] | list[Callable[[dict[str, Any]], Any]] | None = None,
        fileloc: str | None = None,
        **unsupported: Any,
    ) -> None:
        if not isinstance(dag_id, str) or not _ID.match(dag_id):
            raise ValueError(f"invalid dag_id {dag_id!r}: use letters, digits, _ . -")
        self.dag_id = dag_id
        self.warnings: list[str] = []
        self._check_unsupported(unsupported)
        self.schedule = normalise_schedule(schedule, dag_id)
        if max_active_runs is not None and (not isinstance(max_active_runs, int) or max_active_runs < 1):
            raise ValueError(f"DAG {dag_id!r}: max_active_runs must be an integer >= 1")
        if max_active_tasks is not None and (not isinstance(max_active_tasks, int) or max_active_tasks < 1):
            raise ValueError(f"DAG {dag_id!r}: max_active_tasks must be an integer >= 1")
        if batch is not None and not isinstance(batch, EventBatch):
            raise TypeError(f"DAG {dag_id!r}: batch must be an EventBatch(...)")
        if batch is not None and self.asset_condition is None:
            raise ValueError(f"DAG {dag_id!r}: batch= needs a schedule on assets")
        from herald.sdk.asset_windows import timed

        if timed(self.schedule_condition) and (batch is not None or not isinstance(self.schedule, BaseAsset)):
            raise ValueError(
                f"DAG {dag_id!r}: within() and missing_for() are a whole schedule: no batch=, no timetable around them"
            )
        if batch is None and getattr(self.schedule, "batch_asset_events", False):
            # Airflow's batch_asset_events=True: a run takes every event queued when the scheduler looks
            batch = ALL_QUEUED
        self.flow = FlowControl.build(
            dag_id,
            key=key,
            max_active_runs_per_key=max_active_runs_per_key,
            on_new_event=on_new_event,
            priority=priority,
            throttle=throttle,
            rate_limit=rate_limit,
            debounce=debounce,
            cancel_on=cancel_on,
            cancel_key=cancel_key,
        )
        if self.flow is not None and self.asset_condition is None:
            raise ValueError(f"DAG {dag_id!r}: key, priority, throttle and debounce need a schedule on assets")
        if self.flow is not None and self.flow.debounce is not None and batch is not None:
            raise ValueError(f"DAG {dag_id!r}: debounce= makes its own batches; drop batch=")
        if self.flow is not None and self.flow.cancel_on:
            self._check_cancel_on(self.flow.cancel_on)
        # as in Airflow, default_args may carry the DAG's start and end dates
        start_date = start_date or (default_args or {}).get("start_date")
        end_date = end_date or (default_args or {}).get("end_date")
        for name, value in (("start_date", start_date), ("end_date", end_date)):
            if value is not None and not isinstance(value, datetime):
                raise TypeError(f"DAG {dag_id!r}: {name} must be a datetime (pendulum.datetime(...)), got {value!r}")
        if start_date is not None and end_date is not None and end_date < start_date:
            raise ValueError(f"DAG {dag_id!r}: end_date is before start_date")
        self.max_active_runs = max_active_runs
        self.max_active_tasks = max_active_tasks
        self.batch = batch
        self.start_date = _utc(start_date)
        self.end_date = _utc(end_date)
        self.catchup = bool(catchup)
        self.dagrun_timeout = _seconds(dagrun_timeout, f"DAG {dag_id!r}: dagrun_timeout")
        self.is_paused_upon_creation = is_paused_upon_creation
        self.default_args = dict(default_args or {})
        if "params" in self.default_args:
            params = {**self.default_args.pop("params"), **(params or {})}
        self.params = dict(params or {})
        self.description = description
        self.doc_md = doc_md
        self.tags = list(tags)
        self.owner = owner or self.default_args.get("owner")
        self.template_searchpath = (
            [template_searchpath] if isinstance(template_searchpath, str) else list(template_searchpath or [])
        )
        self.user_defined_macros = dict(user_defined_macros or {})
        self.user_defined_filters = dict(user_defined_filters or {})
        self.render_template_as_native_obj = render_template_as_native_obj
        self.template_undefined = template_undefined
        self.jinja_environment_kwargs = dict(jinja_environment_kwargs or {})
        self.on_success_callback = on_success_callback
        self.on_failure_callback = on_failure_callback
        #: DAG_CALLBACKS name -> the callables (validated here, as Airflow validates at load)
        self.callbacks: dict[str, list[Callable[[dict[str, Any]], Any]]] = {}
        for name, value in (("on_success_callback", on_success_callback), ("on_failure_callback", on_failure_callback)):
            funcs = _as_list(value)
            for fn in funcs:
                if not callable(fn):
                    raise TypeError(f"DAG {dag_id!r}: {name} must be a callable (or a list of them), got {fn!r}")
            if funcs:
                self.callbacks[name] = funcs
        self.fileloc = fileloc
        self.tasks: dict[str, Task] = {}
        self.task_groups: dict[str, Any] = {}
        self._tokens: list[contextvars.Token[DAG | None]] = []
        self._validate_params()

    def _check_cancel_on(self, assets: tuple[Asset, ...]) -> None:
        """A `cancel_on=` asset is no part of the schedule (its events would both make and cancel
        runs), and a window or an absence has no runs of a key to cancel."""
        from herald.sdk.asset_windows import timed

        if timed(self.schedule_condition):
            raise ValueError(f"DAG {self.dag_id!r}: cancel_on= does not apply to within() or missing_for()")
        scheduled = {a.name for a in self.schedule_condition.iter_assets()} if self.schedule_condition else set()
        both = sorted(a.name for a in assets if a.name in scheduled)
        if both:
            raise ValueError(f"DAG {self.dag_id!r}: {', '.join(both)} is both in the schedule and in cancel_on=")

    def _check_unsupported(self, unsupported: dict[str, Any]) -> None:
        for name, value in unsupported.items():
            if (
                name in REJECTED_DAG_ARGS
                and value not in (None, False, 0)
                and not (name == "dag_run_conf_overrides_params" and value is True)
            ):
                instead = REJECTED_DAG_ARGS[name] or "the default"
                raise ValueError(f"DAG {self.dag_id!r}: {name}= is not supported by Herald; use {instead} instead")
            if name in IGNORED_DAG_ARGS:
                if value not in (None, False, 0, {}, [], ""):
                    why = IGNORED_DAG_ARGS[name] or "it has no effect in Herald"
                    self.warnings.append(f"DAG argument {name}={value!r} is accepted but has no effect ({why})")
                continue
            if name not in REJECTED_DAG_ARGS:
                raise TypeError(f"DAG {self.dag_id!r}: unexpected argument {name!r}")

    def _validate_params(self) -> None:
        for name, value in self.params.items():
            check = getattr(value, "check_default", None)
            if check is not None:
                try:
                    check()
                except Exception as exc:
                    raise ValueError(f"DAG {self.dag_id!r}: the default of param {name!r} is invalid: {exc}") from exc

    @property
    def _time_schedule(self) -> Any:
        """The part of the schedule that makes runs at times: a cron string, a timetable, or None."""
        if isinstance(self.schedule, str):
            return self.schedule
        timetable = getattr(self.schedule, "timetable", self.schedule)
        return timetable if isinstance(timetable, CronTriggerTimetable | DeltaTriggerTimetable) else None

    @property
    def ticks(self) -> Ticks | None:
        """When a time-scheduled DAG (alone or with assets) runs, else None."""
        when = self._time_schedule
        if when == "@once":
            return Ticks(once=True)
        if isinstance(when, str):
            return Ticks(cron=when)
        if isinstance(when, CronTriggerTimetable):
            return Ticks(cron=when.cron, timezone=when.timezone)
        if isinstance(when, DeltaTriggerTimetable):
            return Ticks(every=when.delta)
        return None

    @property
    def cron(self) -> str | None:
        """The cron expression of a cron-scheduled DAG (alone or with assets), else None."""
        ticks = self.ticks
        return ticks.cron if ticks is not None else None

    @property
    def cron_timezone(self) -> str:
        """The time zone the cron expression is read in (UTC unless a timetable names one)."""
        ticks = self.ticks
        return ticks.timezone if ticks is not None else "UTC"

    @property
    def cron_interval(self) -> float:
        """The length of a scheduled run's data interval, in seconds (0: the interval is the tick itself)."""
        when = self._time_schedule
        return when.interval.total_seconds() if isinstance(when, CronTriggerTimetable | DeltaTriggerTimetable) else 0.0

    @property
    def asset_condition(self) -> BaseAsset | None:
        """The condition whose events start runs of their own (assets, AssetOrTimeSchedule), else None."""
        if isinstance(self.schedule, BaseAsset):
            return self.schedule
        if isinstance(self.schedule, AssetTriggeredTimetable):
            return self.schedule.asset_condition
        return None

    @property
    def gate_condition(self) -> BaseAsset | None:
        """`AssetAndTimeSchedule`'s condition: a cron tick makes a run only once it holds."""
        return self.schedule.asset_condition if isinstance(self.schedule, AssetAndTimeSchedule) else None

    @property
    def schedule_condition(self) -> BaseAsset | None:
        """Every asset condition of the schedule (its assets' events are queued for this DAG)."""
        return self.asset_condition or self.gate_condition

    @property
    def task_ids(self) -> list[str]:
        """Every task id, in the order tasks were added."""
        return list(self.tasks)

    @property
    def task_dict(self) -> dict[str, Any]:
        """Task id -> operator (or Task for TaskFlow tasks), as Airflow's `dag.task_dict`."""
        return {tid: (t.operator if t.operator is not None else t) for tid, t in self.tasks.items()}

    def get_task(self, task_id: str) -> Any:
        """The operator (or Task) of `task_id`."""
        if task_id not in self.tasks:
            raise KeyError(f"task {task_id!r} is not in DAG {self.dag_id!r}")
        return self.task_dict[task_id]

    def schedule_description(self) -> Any:
        """The schedule as JSON: a cron string, an asset condition, a timetable's description, or None."""
        if isinstance(self.schedule, str | None):
            return self.schedule
        return self.schedule.describe()

    def add_task(self, task: Task, *, rename: bool = True) -> None:
        """Add a task, renaming it `name__N` when its id is already taken, as Airflow does for TaskFlow."""
        base, n = task.task_id, 1
        if task.task_id in self.tasks and not rename:
            raise ValueError(f"DAG {self.dag_id!r} already has a task with id {task.task_id!r}")
        while task.task_id in self.tasks:
            task.task_id = f"{base}__{n}"
            n += 1
        task.dag = self
        self.tasks[task.task_id] = task

    def warn(self, message: str) -> None:
        """Record an argument Herald accepts without honouring it (shown with the DAG)."""
        if message not in self.warnings:
            self.warnings.append(message)

    def outlets(self) -> list[Asset]:
        """Every asset a task of this DAG emits events for."""
        seen: dict[str, Asset] = {}
        for task in self.tasks.values():
            for asset in task.outlets:
                if isinstance(asset, Asset):
                    seen.setdefault(asset.name, asset)
        return list(seen.values())

    def downstream_of(self, task_id: str, *, transitive: bool = False) -> set[str]:
        """Ids of the tasks downstream of `task_id` (direct only, or every one)."""
        direct = {tid for tid, t in self.tasks.items() if task_id in t.upstream}
        if not transitive:
            return direct
        seen: set[str] = set()
        todo = list(direct)
        while todo:
            tid = todo.pop()
            if tid in seen:
                continue
            seen.add(tid)
            todo.extend(t for t, x in self.tasks.items() if tid in x.upstream)
        return seen

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

    # `with DAG(...) as dag:` collects the tasks created in the block
    def __enter__(self) -> DAG:
        self._tokens.append(_building.set(self))
        return self

    def __exit__(self, *exc: object) -> None:
        _building.reset(self._tokens.pop())
        if exc[0] is None:
            self.validate()
            register(self)

    def _herald_edge_tasks(self, side: str) -> list[Task]:
        raise TypeError("a DAG cannot be a dependency; use its tasks")

    def __repr__(self) -> str:
        return f"<DAG {self.dag_id}>"


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    from datetime import UTC

    return value.replace(tzinfo=UTC)


Timetable = CronTriggerTimetable | DeltaTriggerTimetable | AssetTriggeredTimetable | AssetAndTimeSchedule


def normalise_schedule(schedule: Any, dag_id: str) -> BaseAsset | str | Timetable | None:
    """Turn the user's `schedule=` into an asset condition, a cron string, a timetable or None."""
    if isinstance(schedule, BaseAsset):
        from herald.sdk.asset_windows import check_whole_schedule

        check_whole_schedule(schedule, dag_id)
        return schedule
    if schedule is None:
        return schedule
    if isinstance(
        schedule, CronTriggerTimetable | DeltaTriggerTimetable | AssetTriggeredTimetable | AssetAndTimeSchedule
    ):
        return schedule
    if isinstance(schedule, str):
        from croniter import croniter

        if schedule == "@once":
            return schedule  # one run, at start_date
        if schedule == "@continuous":
            raise ValueError(
                f"DAG {dag_id!r}: schedule '@continuous' is not supported by Herald; use a DAG scheduled on "
                f"an asset its last task updates, or a cron string"
            )
        if not croniter.is_valid(schedule):
            raise ValueError(
                f"DAG {dag_id!r}: schedule {schedule!r} is not a valid cron expression "
                f"(for example '*/5 * * * *' or '@daily')"
            )
        return schedule
    if isinstance(schedule, timedelta):
        return DeltaTriggerTimetable(schedule)  # Airflow 3: a run every `schedule`
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
        f"a cron string, a timedelta, a timetable (CronTriggerTimetable, DeltaTriggerTimetable, "
        f"AssetTriggeredTimetable, AssetOrTimeSchedule, "
        f"AssetAndTimeSchedule) or None, got {type(schedule).__name__}"
    )


# The DAG being built (by `@dag` or `with DAG`), the task group being built, and the DAGs a file load collects.
_building: contextvars.ContextVar[DAG | None] = contextvars.ContextVar("herald_building", default=None)
_group: contextvars.ContextVar[Any] = contextvars.ContextVar("herald_group", default=None)
_collected: contextvars.ContextVar[list[DAG] | None] = contextvars.ContextVar("herald_collected", default=None)


def current_dag() -> DAG | None:
    """The DAG being defined right now (inside `@dag` or `with DAG`), if any."""
    return _building.get()


def current_group() -> Any:
    """The task group being defined right now, if any."""
    return _group.get()


def set_current_group(group: Any) -> contextvars.Token[Any]:
    """Enter a task group (used by `TaskGroup`)."""
    return _group.set(group)


def reset_current_group(token: contextvars.Token[Any]) -> None:
    """Leave a task group."""
    _group.reset(token)


def register(dag: DAG) -> None:
    """Hand a finished DAG to the loader collecting the file's DAGs (once)."""
    found = _collected.get()
    if found is not None and all(d is not dag for d in found):
        found.append(dag)


@contextmanager
def collect_dags() -> Iterator[list[DAG]]:
    """Collect every DAG built while the block runs (used by the DAG loader)."""
    found: list[DAG] = []
    token = _collected.set(found)
    try:
        yield found
    finally:
        _collected.reset(token)


def merged_defaults(dag: DAG | None, group: Any, explicit: dict[str, Any] | None = None) -> dict[str, Any]:
    """default_args as Airflow merges them: the DAG's, then the enclosing groups', then the task's own."""
    merged: dict[str, Any] = dict(dag.default_args) if dag is not None else {}
    chain: list[Any] = []
    while group is not None:
        chain.append(group)
        group = getattr(group, "parent_group", None)
    for g in reversed(chain):
        merged.update(getattr(g, "default_args", {}) or {})
    merged.update(explicit or {})
    return merged


def attach(task: Task, dag: DAG | None, *, rename: bool, group: Any = None) -> None:
    """Name a new task within its group and add it to its DAG."""
    group = group if group is not None else current_group()
    if not isinstance(task.task_id, str) or not _ID.match(task.task_id):
        raise ValueError(f"invalid task_id {task.task_id!r}: use letters, digits, _ . -")
    if group is not None:
        task.task_id = group.child_id(task.task_id)
    for arg in xcom_args_in([task.args, task.kwargs, task.mapped.value if task.mapped else None]):
        task.upstream.add(arg.task.task_id)
    if dag is not None:
        dag.add_task(task, rename=rename)
    if group is not None:
        group.add(task)


# -- TaskFlow -----------------------------------------------------------------------------------


class TaskFlow:
    """A function decorated with `@task` (or a variant): call it inside a DAG to add a task.

    `.override(**options)` changes options for one call; `.partial(...)` and
    `.expand(...)`/`.expand_kwargs(...)` make a mapped task; `.function` is the plain function.
    """

    def __init__(self, function: Callable[..., Any], kind: str, options: dict[str, Any]) -> None:
        if not callable(function):
            raise TypeError(f"@task decorates a function, got {function!r}")
        self.function = function
        self.kind = kind
        self.options = options
        self._partial: dict[str, Any] = {}
        self.__name__ = getattr(function, "__name__", "task")
        self.__doc__ = function.__doc__
        self.__wrapped__ = function

    def override(self, **options: Any) -> TaskFlow:
        """The same task with some options changed (task_id, retries, ...)."""
        return TaskFlow(self.function, self.kind, {**self.options, **options})

    def partial(self, **kwargs: Any) -> TaskFlow:
        """Fix some arguments of a mapped task; `.expand()` the others."""
        new = TaskFlow(self.function, self.kind, self.options)
        new._partial = {**self._partial, **kwargs}
        return new

    def expand(self, **mapped: Any) -> XComArg:
        """One try per value (per combination of values) of the named arguments."""
        if not mapped:
            raise TypeError(f"{self.__name__}.expand() needs at least one argument to map over")
        for name, value in mapped.items():
            if not isinstance(value, list | tuple | dict | XComArg):
                raise TypeError(f"{self.__name__}.expand({name}=...) needs a list, a dict or a task's output")
        return self._add((), self._partial, MappedInput("expand", dict(mapped)))

    def expand_kwargs(self, value: Any) -> XComArg:
        """One try per dict of keyword arguments."""
        if not isinstance(value, list | tuple | XComArg):
            raise TypeError(f"{self.__name__}.expand_kwargs() needs a list of dicts or a task's output")
        return self._add((), self._partial, MappedInput("expand_kwargs", value))

    def __call__(self, *args: Any, **kwargs: Any) -> XComArg:
        return self._add(args, {**self._partial, **kwargs}, None)

    def _add(self, args: tuple[Any, ...], kwargs: dict[str, Any], mapped: MappedInput | None) -> XComArg:
        current = current_dag()
        if current is None:
            raise RuntimeError(
                f"task {self.__name__!r} was called outside a @dag function or a `with DAG(...)` block; "
                f"call it inside one, or call {self.__name__}.function(...) to run the plain function"
            )
        options = merged_defaults(current, current_group(), None)
        options = {k: v for k, v in options.items() if k in TASK_ARGS}
        options.update(self.options)
        task_id = options.pop("task_id", None) or self.__name__
        kind_options = {k: options.pop(k) for k in list(options) if k not in TASK_ARGS}
        fields = task_fields(options, f"task {task_id!r}", current.warn)
        new = Task(
            task_id=task_id,
            function=self.function,
            args=args,
            kwargs=kwargs,
            kind=self.kind,
            options=kind_options,
            mapped=mapped,
            **fields,
        )
        _check_kind_options(new)
        if self.kind == "sensor" and kind_options.get("mode") == "reschedule":
            current.warn(f"task {task_id!r}: mode='reschedule' runs as 'poke' (the try waits in its worker)")
        attach(new, current, rename=True)
        return XComArg(new)


#: options each TaskFlow variant takes besides the task arguments
KIND_OPTIONS: dict[str, set[str]] = {
    "python": {"templates_dict", "show_return_value_in_logs"},
    "branch": set(),
    "short_circuit": {"ignore_downstream_trigger_rules"},
    "bash": {"env", "append_env", "cwd", "skip_on_exit_code", "output_encoding", "output_processor"},
    "sensor": {"poke_interval", "sensor_timeout", "soft_fail", "mode", "exponential_backoff", "max_wait", "never_fail"},
}


def _check_kind_options(task: Task) -> None:
    allowed = KIND_OPTIONS[task.kind]
    unknown = set(task.options) - allowed
    if unknown:
        raise TypeError(f"task {task.task_id!r}: unexpected argument(s) {sorted(unknown)} for @task.{task.kind}")


class TaskDecorator:
    """`@task`, `@task(...)`, and Airflow's variants `@task.python`, `.branch`, `.short_circuit`, `.bash`, `.sensor`."""

    def __init__(self, kind: str = "python") -> None:
        self.kind = kind

    def __call__(self, python_callable: Callable[..., Any] | None = None, **options: Any) -> Any:
        """Decorate a function (with or without arguments).

        Args:
            task_id: defaults to the function's name.
            retries: how many times a failed task is tried again.
            retry_delay: seconds (or a timedelta) between tries.
            timeout: seconds after which a running try is killed and fails
                (`execution_timeout` is accepted as Airflow's name for it).
            outlets: assets that get an event when the task succeeds.
            queue: the worker queue the task runs on (Celery executor).
            trigger_rule: when the task runs given its upstream states.
            multiple_outputs: push each key of the returned dict as its own XCom.
            **options: the other task arguments of Airflow's operators.
        """
        if self.kind == "sensor" and "timeout" in options:
            # a sensor's timeout bounds its poking, not one try (that is execution_timeout)
            options["sensor_timeout"] = options.pop("timeout")
        # validate the plain task arguments now, so a typo fails at import time
        plain = {k: v for k, v in options.items() if k in TASK_ARGS}
        extra = set(options) - TASK_ARGS - KIND_OPTIONS[self.kind]
        if extra:
            raise TypeError(
                f"unexpected argument(s) {sorted(extra)} for @task{'' if self.kind == 'python' else '.' + self.kind}"
            )
        task_fields({k: v for k, v in plain.items() if k != "task_id"}, "@task", lambda _m: None)

        def decorate(fn: Callable[..., Any]) -> TaskFlow:
            return TaskFlow(fn, self.kind, dict(options))

        if python_callable is not None:
            return decorate(python_callable)
        return decorate

    @property
    def python(self) -> TaskDecorator:
        """`@task.python`: the same as `@task`."""
        return TaskDecorator("python")

    @property
    def branch(self) -> TaskDecorator:
        """`@task.branch`: the function returns the task id(s) to follow; the other direct downstream tasks skip."""
        return TaskDecorator("branch")

    @property
    def short_circuit(self) -> TaskDecorator:
        """`@task.short_circuit`: a falsy return value skips the downstream tasks."""
        return TaskDecorator("short_circuit")

    @property
    def bash(self) -> TaskDecorator:
        """`@task.bash`: the function returns a bash command, which runs as BashOperator's."""
        return TaskDecorator("bash")

    @property
    def sensor(self) -> TaskDecorator:
        """`@task.sensor`: the function is poked until it returns True (or a done PokeReturnValue)."""
        return TaskDecorator("sensor")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(
            f"@task.{name} is not supported by Herald; use @task (plain Python, run in the worker's "
            f"environment), @task.bash, @task.branch, @task.short_circuit or @task.sensor"
        )


task = TaskDecorator()


def dag(dag_function: Callable[..., Any] | None = None, **dag_args: Any) -> Any:
    """Make a function define a DAG: calling it builds the DAG and registers it.

    See `DAG` for the arguments; `dag_id` defaults to the function's name and the
    description to its docstring.
    """
    schedule = dag_args.pop("schedule", None)
    dag_id = dag_args.pop("dag_id", None)

    def decorate(fn: Callable[..., Any]) -> Callable[..., DAG]:
        def build(*args: Any, **kwargs: Any) -> DAG:
            options = dict(dag_args)
            if options.get("description") is None:
                options["description"] = inspect.getdoc(fn) or None
            # as in Airflow, the function's parameters with defaults become DAG params; the
            # function gets placeholders that tasks resolve from the run's params
            bound = inspect.signature(fn).bind_partial(*args, **kwargs)
            params = dict(options.pop("params", None) or {})
            for name, p in inspect.signature(fn).parameters.items():
                if name in bound.arguments or p.default is inspect.Parameter.empty:
                    continue
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                    params.setdefault(name, p.default)
                    bound.arguments[name] = DagParam(name, p.default)
            new = DAG(dag_id or fn.__name__, schedule, fileloc=inspect.getsourcefile(fn), params=params, **options)
            token = _building.set(new)
            try:
                fn(*bound.args, **bound.kwargs)
            finally:
                _building.reset(token)
            new.validate()
            register(new)
            return new

        build.__name__ = fn.__name__
        build.__doc__ = fn.__doc__
        build.__wrapped__ = fn  # type: ignore[attr-defined]
        return build

    if dag_function is not None:
        return decorate(dag_function)
    return decorate
