"""Task groups: `with TaskGroup("group"):` and `@task_group`; task ids become `group.task`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from herald.sdk.dag import (
    DAG,
    DependencyMixin,
    Task,
    current_dag,
    current_group,
    reset_current_group,
    set_current_group,
)

__all__ = ["TaskGroup", "task_group"]


class TaskGroup(DependencyMixin):
    """A named group of tasks: ids prefixed `group_id.`, default_args shared, `>>` on the whole group.

    Args:
        group_id: the group's id (prefixed by its parent group's id).
        prefix_group_id: prefix the ids of the tasks inside (default True).
        default_args: task arguments applied to the group's tasks.
        tooltip, ui_color, ui_fgcolor: shown in the UI.
    """

    def __init__(
        self,
        group_id: str,
        prefix_group_id: bool = True,
        parent_group: TaskGroup | None = None,
        dag: DAG | None = None,
        default_args: dict[str, Any] | None = None,
        tooltip: str = "",
        ui_color: str = "CornflowerBlue",
        ui_fgcolor: str = "#000",
        add_suffix_on_collision: bool = False,
    ) -> None:
        self.parent_group: TaskGroup | None = parent_group if parent_group is not None else current_group()
        self.dag: DAG | None = (
            dag or current_dag() or (self.parent_group.dag if self.parent_group is not None else None)
        )
        if not isinstance(group_id, str) or not group_id:
            raise ValueError(f"a task group needs a non-empty string id, got {group_id!r}")
        self._group_id = group_id
        self.prefix_group_id = prefix_group_id
        self.default_args = dict(default_args or {})
        self.tooltip = tooltip
        self.ui_color = ui_color
        self.ui_fgcolor = ui_fgcolor
        self.children: list[Task] = []
        self.groups: list[TaskGroup] = []
        group_id = self.group_id
        if self.dag is not None:
            if group_id in self.dag.task_groups:
                if not add_suffix_on_collision:
                    raise ValueError(f"DAG {self.dag.dag_id!r} already has a task group {group_id!r}")
                n = 1
                while f"{group_id}__{n}" in self.dag.task_groups:
                    n += 1
                self._group_id = f"{self._group_id}__{n}"
            self.dag.task_groups[self.group_id] = self
        if self.parent_group is not None:
            self.parent_group.groups.append(self)
        self._token: Any = None

    @property
    def group_id(self) -> str:
        """The full id (with the parent groups' prefixes)."""
        if self.parent_group is not None:
            return self.parent_group.child_id(self._group_id)
        return self._group_id

    @property
    def label(self) -> str:
        """The group's own id, without its parents'."""
        return self._group_id

    def child_id(self, label: str) -> str:
        """The id of a task (or group) named `label` inside this group."""
        if self.prefix_group_id:
            return f"{self.group_id}.{label}"
        if self.parent_group is not None:
            return self.parent_group.child_id(label)
        return label

    def add(self, task: Task) -> None:
        """Record a task created inside the group."""
        self.children.append(task)

    def all_tasks(self) -> list[Task]:
        """The tasks of the group and of its nested groups."""
        return [*self.children, *(t for g in self.groups for t in g.all_tasks())]

    def _herald_edge_tasks(self, side: str) -> list[Task]:
        tasks = self.all_tasks()
        ids = {t.task_id for t in tasks}
        if side == "roots":
            return [t for t in tasks if not (t.upstream & ids)]
        downstream_inside: set[str] = set()
        for t in tasks:
            downstream_inside.update(t.upstream & ids)
        return [t for t in tasks if t.task_id not in downstream_inside]

    def __enter__(self) -> TaskGroup:
        self._token = set_current_group(self)
        return self

    def __exit__(self, *exc: object) -> None:
        reset_current_group(self._token)

    def __repr__(self) -> str:
        return f"<TaskGroup {self.group_id}>"


class TaskGroupFactory:
    """A function decorated with `@task_group`: calling it builds a group of the tasks it creates."""

    def __init__(self, function: Callable[..., Any], options: dict[str, Any]) -> None:
        self.function = function
        self.options = options
        functools.update_wrapper(self, function)

    def override(self, **options: Any) -> TaskGroupFactory:
        """The same group with some options changed (group_id, default_args, ...)."""
        return TaskGroupFactory(self.function, {**self.options, **options})

    def expand(self, **_: Any) -> Any:
        """Mapped task groups are not supported yet."""
        raise NotImplementedError(
            "mapped task groups (@task_group ... .expand()) are not supported by Herald; map the tasks inside instead"
        )

    expand_kwargs = expand
    partial = override

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        options = dict(self.options)
        group_id = options.pop("group_id", None) or self.function.__name__
        if "tooltip" not in options and self.function.__doc__:
            options["tooltip"] = self.function.__doc__.strip()
        with TaskGroup(group_id, **options) as group:
            value = self.function(*args, **kwargs)
        if value is not None and hasattr(value, "_herald_edge_tasks"):
            return value
        if isinstance(value, list | tuple) and value and all(hasattr(v, "_herald_edge_tasks") for v in value):
            return value
        return group


def task_group(python_callable: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Decorate a function whose tasks form a task group named after it (or `group_id=`)."""
    if python_callable is not None:
        return TaskGroupFactory(python_callable, options)
    return lambda fn: TaskGroupFactory(fn, options)
