"""`BaseOperator`: Airflow's classic operator, subclassed with `execute(self, context)`."""

from __future__ import annotations

import contextvars
import functools
import inspect
import itertools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NoReturn

from herald.airflow.exceptions import TaskDeferralError, TaskDeferralTimeout
from herald.sdk.airflow_triggers import TRIGGER_FAIL, TRIGGER_TIMEOUT
from herald.sdk.dag import (
    DAG,
    TASK_ARGS,
    DependencyMixin,
    MappedInput,
    Task,
    XComArg,
    attach,
    current_dag,
    current_group,
    edge_tasks,
    merged_defaults,
    set_dependency,
    task_fields,
    xcom_args_in,
)
from herald.sdk.waits import TaskDeferred

# Set while the worker builds one expansion of a mapped operator: the instance joins no DAG.
_materialising: contextvars.ContextVar[DAG | None] = contextvars.ContextVar("herald_materialising", default=None)


def _accepted_names(cls: type) -> set[str]:
    names: set[str] = set(TASK_ARGS)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        init = getattr(init, "__wrapped__", init)
        for p in inspect.signature(init).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
                names.add(p.name)
    return names


def _apply_defaults(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap an operator's __init__: default_args fill the arguments it was not given, as in Airflow."""

    @functools.wraps(init)
    def wrapper(self: BaseOperator, *args: Any, **kwargs: Any) -> None:
        if self.__dict__.get("_herald_in_init"):
            init(self, *args, **kwargs)
            return
        self.__dict__["_herald_in_init"] = True
        try:
            dag = kwargs.get("dag") or _materialising.get() or current_dag()
            group = kwargs.get("task_group") or current_group()
            defaults = merged_defaults(dag, group, kwargs.pop("default_args", None))
            accepted = _accepted_names(type(self))
            for key, value in defaults.items():
                if key in accepted and key not in kwargs:
                    kwargs[key] = value
            if "params" in defaults and "params" in kwargs and kwargs["params"] is not defaults["params"]:
                kwargs["params"] = {**defaults["params"], **kwargs["params"]}
            init(self, *args, **kwargs)
        finally:
            self.__dict__["_herald_in_init"] = False
        self._herald_link_xcom_args()

    return wrapper


class BaseOperator(DependencyMixin):
    """The base of classic operators: subclass it and implement `execute(self, context)`.

    Templated fields (`template_fields`) are rendered with Jinja before `execute`;
    string fields ending in one of `template_ext` are read as template files from the
    DAG's folder (and `template_searchpath`). Created inside `with DAG(...)` or a
    `@dag` function, the operator becomes a task of that DAG.

    Args:
        task_id: the task's id (prefixed with the task group's id inside one).
        retries, retry_delay, execution_timeout, trigger_rule, outlets, inlets, queue,
        owner, doc_md, params, do_xcom_push, on_*_callback: as in Airflow.
        dag: the DAG, when not created inside one.
        task_group: the task group, when not created inside one.
        default_args: task arguments applied when not given.
        **kwargs: the other Airflow task arguments (pool, priority_weight, email, ...),
            accepted with a warning on the DAG when they cannot change what runs.
    """

    template_fields: ClassVar[Sequence[str]] = ()
    template_ext: ClassVar[Sequence[str]] = ()
    template_fields_renderers: ClassVar[dict[str, str]] = {}
    ui_color: ClassVar[str] = "#fff"
    ui_fgcolor: ClassVar[str] = "#000"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not hasattr(init, "__wrapped__"):
            cls.__init__ = _apply_defaults(init)  # type: ignore[method-assign]

    def __init__(
        self,
        *,
        task_id: str,
        dag: DAG | None = None,
        task_group: Any = None,
        **kwargs: Any,
    ) -> None:
        unknown = set(kwargs) - TASK_ARGS
        if unknown:
            raise TypeError(
                f"Invalid arguments were passed to {type(self).__name__} (task_id: {task_id}): {sorted(unknown)}"
            )
        building = _materialising.get()
        target = dag or building or current_dag()
        warn = target.warn if target is not None else (lambda _m: None)
        fields = task_fields(kwargs, f"task {task_id!r}", warn)
        self._task = Task(task_id=task_id, function=self.execute, kind="operator", operator=self, **fields)
        if building is None:
            attach(self._task, target, rename=False, group=task_group)
        else:
            self._task.dag = building
        self.dag = target
        self.task_group = task_group or current_group()
        self.params = fields.get("params", {})
        self.owner = fields.get("owner")
        self.doc_md = fields.get("doc_md")

    def _herald_link_xcom_args(self) -> None:
        # an XComArg given to a templated field makes its task upstream, as in Airflow
        for name in self.template_fields:
            for arg in xcom_args_in(getattr(self, name, None)):
                if arg.task is not self._task:
                    self._task.upstream.add(arg.task.task_id)

    def execute(self, context: dict[str, Any]) -> Any:
        """What the task does; the return value is its result (XCom `return_value`)."""
        raise NotImplementedError(f"{type(self).__name__} must implement execute(self, context)")

    def defer(
        self,
        *,
        trigger: Any,
        method_name: str,
        kwargs: dict[str, Any] | None = None,
        timeout: Any = None,
    ) -> NoReturn:
        """Give up the worker until `trigger` fires, then resume in `method_name(context, event=..., **kwargs)`.

        As Airflow's: the try keeps its number; `timeout` (seconds or a timedelta) fails
        it, retries applying, if the trigger has not fired by then. Herald's scheduler
        waits on time triggers (`DateTimeTrigger`, `TimeDeltaTrigger`); a trigger written
        for Airflow (`BaseTrigger`: `serialize()` and `async def run()`) runs in a
        triggerer. `kwargs` must be JSON values (they are kept in the database while
        the try waits).
        """
        raise TaskDeferred(trigger=trigger, method_name=method_name, kwargs=kwargs, timeout=timeout)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: dict[str, Any]) -> Any:
        """Called instead of `execute` when a deferred try resumes: `next_method(context, **next_kwargs)`.

        `next_method` is `"__fail__"` when the trigger failed or timed out: the try
        fails here, in its worker (so its failure and retry callbacks run), with
        `TaskDeferralError` or `TaskDeferralTimeout`.
        """
        if next_method == TRIGGER_FAIL:
            fail_resumed(next_kwargs)
        return getattr(self, next_method)(context, **(next_kwargs or {}))

    def render_template_fields(self, context: dict[str, Any], jinja_env: Any = None) -> None:
        """Render every templated field in place (the worker calls this on a copy before `execute`)."""
        from herald.airflow.templating import environment, render

        env = jinja_env or environment(self._task.dag)
        for name in self.template_fields:
            if hasattr(self, name):
                setattr(self, name, render(getattr(self, name), context, env, tuple(self.template_ext)))

    # -- identity and graph ----------------------------------------------------------------

    @property
    def task_id(self) -> str:
        """The task's id in its DAG."""
        return self._task.task_id

    @property
    def dag_id(self) -> str | None:
        """The id of the DAG the task belongs to."""
        return self._task.dag.dag_id if self._task.dag is not None else None

    @property
    def retries(self) -> int:
        """How many times a failed try is repeated."""
        return self._task.retries

    @property
    def trigger_rule(self) -> str:
        """When the task runs given its upstream states."""
        return self._task.trigger_rule

    @property
    def outlets(self) -> list[Any]:
        """Assets that get an event when the task succeeds."""
        return self._task.outlets

    @property
    def inlets(self) -> list[Any]:
        """Assets the task reads (for `inlet_events`)."""
        return self._task.inlets

    @property
    def upstream_task_ids(self) -> set[str]:
        """Ids of the upstream tasks."""
        return set(self._task.upstream)

    @property
    def downstream_task_ids(self) -> set[str]:
        """Ids of the downstream tasks."""
        return self._task.downstream_task_ids

    @property
    def output(self) -> XComArg:
        """The task's return value, to pass to another task."""
        return XComArg(self._task)

    def set_upstream(self, other: Any) -> None:
        """`self << other`."""
        set_dependency(other, self)

    def set_downstream(self, other: Any) -> None:
        """`self >> other`."""
        set_dependency(self, other)

    def _herald_edge_tasks(self, side: str) -> list[Task]:
        return [self._task]

    @classmethod
    def partial(cls, **kwargs: Any) -> OperatorPartial:
        """Fix the arguments shared by every try of a mapped operator; `.expand()` the others."""
        return OperatorPartial(cls, kwargs)

    def __repr__(self) -> str:
        return f"<Task({type(self).__name__}): {self.task_id}>"


def fail_resumed(next_kwargs: dict[str, Any] | None) -> NoReturn:
    """Fail a try resumed with `next_method="__fail__"`: the trigger's traceback goes to the try's log."""
    kwargs = next_kwargs or {}
    lines = kwargs.get("traceback")
    if isinstance(lines, list) and lines:
        print("The trigger failed:\n" + "".join(str(line) for line in lines).rstrip("\n"))
    error = str(kwargs.get("error") or "the trigger failed")
    if error.startswith((TRIGGER_TIMEOUT, "Trigger timeout")):
        raise TaskDeferralTimeout(error)
    raise TaskDeferralError(error)


# operators without an __init__ of their own (EmptyOperator, user subclasses) get default_args too
BaseOperator.__init__ = _apply_defaults(BaseOperator.__init__)  # type: ignore[method-assign]


class OperatorPartial:
    """`Operator.partial(task_id=..., ...)`: waits for `.expand(...)` or `.expand_kwargs(...)`."""

    def __init__(self, operator_class: type[BaseOperator], kwargs: dict[str, Any]) -> None:
        if "task_id" not in kwargs:
            raise TypeError(f"{operator_class.__name__}.partial() needs task_id=")
        self.operator_class = operator_class
        self.kwargs = kwargs

    def expand(self, **mapped: Any) -> MappedOperator:
        """One try per value (per combination of values) of the named arguments."""
        accepted = _accepted_names(self.operator_class)
        for name, value in mapped.items():
            if name not in accepted:
                raise TypeError(f"{self.operator_class.__name__}.expand(): unexpected argument {name!r}")
            if not isinstance(value, list | tuple | dict | XComArg):
                raise TypeError(f"{self.operator_class.__name__}.expand({name}=...) needs a list, a dict or an XComArg")
        if not mapped:
            raise TypeError("expand() needs at least one argument to map over")
        return MappedOperator(self.operator_class, self.kwargs, MappedInput("expand", dict(mapped)))

    def expand_kwargs(self, value: Any) -> MappedOperator:
        """One try per dict of keyword arguments."""
        if not isinstance(value, list | tuple | XComArg):
            raise TypeError("expand_kwargs() needs a list of dicts or an XComArg")
        return MappedOperator(self.operator_class, self.kwargs, MappedInput("expand_kwargs", value))


class MappedOperator(DependencyMixin):
    """A mapped classic operator: the scheduler makes one try per map index; each builds its operator."""

    def __init__(self, operator_class: type[BaseOperator], partial_kwargs: dict[str, Any], mapped: MappedInput) -> None:
        dag = partial_kwargs.get("dag") or current_dag()
        group = partial_kwargs.get("task_group") or current_group()
        task_id = str(partial_kwargs["task_id"])
        options = merged_defaults(dag, group, partial_kwargs.get("default_args"))
        options.update({k: v for k, v in partial_kwargs.items() if k in TASK_ARGS and k != "task_id"})
        options = {k: v for k, v in options.items() if k in TASK_ARGS and k != "task_id"}
        warn = dag.warn if dag is not None else (lambda _m: None)
        fields = task_fields(options, f"task {task_id!r}", warn)
        self.operator_class = operator_class
        self.partial_kwargs = {k: v for k, v in partial_kwargs.items() if k not in ("dag", "task_group")}
        self._task = Task(
            task_id=task_id,
            function=operator_class.execute,
            kind="operator",
            options={"operator_class": operator_class, "partial_kwargs": self.partial_kwargs},
            mapped=mapped,
            **fields,
        )
        for arg in xcom_args_in(self.partial_kwargs):
            self._task.upstream.add(arg.task.task_id)
        attach(self._task, dag, rename=False, group=group)

    @property
    def task_id(self) -> str:
        """The mapped task's id."""
        return self._task.task_id

    @property
    def output(self) -> XComArg:
        """The results of every map index, as a list, for downstream tasks."""
        return XComArg(self._task)

    def _herald_edge_tasks(self, side: str) -> list[Task]:
        return [self._task]

    def build(self, combination: dict[str, Any]) -> BaseOperator:
        """The operator of one map index (used by the worker)."""
        return materialise(self._task, combination)


def materialise(task: Task, combination: dict[str, Any]) -> BaseOperator:
    """Build the operator of one map index of a mapped operator task, attached to no DAG."""
    cls: type[BaseOperator] = task.options["operator_class"]
    kwargs = {**task.options["partial_kwargs"], **combination}
    token = _materialising.set(task.dag)
    try:
        op = cls(**kwargs)
    finally:
        _materialising.reset(token)
    op._task = task
    return op


def chain(*tasks: Any) -> None:
    """Set dependencies in sequence: `chain(a, [b, c], d)`; two lists side by side pair up element-wise."""
    for up, down in itertools.pairwise(tasks):
        if isinstance(up, list | tuple) and isinstance(down, list | tuple):
            if len(up) != len(down):
                raise ValueError(f"chain() cannot pair lists of different lengths: got {len(up)} and {len(down)} tasks")
            for a, b in zip(up, down, strict=True):
                set_dependency(a, b)
        else:
            set_dependency(up, down)


def cross_downstream(from_tasks: Sequence[Any], to_tasks: Any) -> None:
    """Every task of `from_tasks` upstream of every task of `to_tasks`."""
    for up in from_tasks:
        set_dependency(up, to_tasks)


def chain_linear(*elements: Any) -> None:
    """Every task of each element upstream of every task of the next element."""
    for up, down in itertools.pairwise(elements):
        set_dependency(up, down)


__all__ = [
    "BaseOperator",
    "MappedOperator",
    "OperatorPartial",
    "chain",
    "chain_linear",
    "cross_downstream",
    "edge_tasks",
    "fail_resumed",
    "materialise",
]
