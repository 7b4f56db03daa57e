"""Python operators: `PythonOperator`, `BranchPythonOperator`, `ShortCircuitOperator`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from herald.airflow.baseoperator import BaseOperator
from herald.airflow.runtime import call_with_context, follow_branch, short_circuit
from herald.sdk.context import get_current_context

__all__ = ["BranchPythonOperator", "PythonOperator", "ShortCircuitOperator", "get_current_context"]


class PythonOperator(BaseOperator):
    """Call a Python function; its return value is the task's result.

    Args:
        python_callable: the function; parameters named like context keys
            (`ti`, `params`, `ds`, ...) receive them, `**kwargs` receives the whole context.
        op_args: positional arguments (templated).
        op_kwargs: keyword arguments (templated).
        templates_dict: a dict rendered before the call, given as the `templates_dict` context key.
        templates_exts: file extensions read as template files in the templated fields.
    """

    template_fields: ClassVar[Sequence[str]] = ("templates_dict", "op_args", "op_kwargs")
    template_fields_renderers: ClassVar[dict[str, str]] = {"templates_dict": "json", "op_args": "py", "op_kwargs": "py"}
    ui_color: ClassVar[str] = "#ffefeb"

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Sequence[Any] | None = None,
        op_kwargs: dict[str, Any] | None = None,
        templates_dict: dict[str, Any] | None = None,
        templates_exts: Sequence[str] | None = None,
        show_return_value_in_logs: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not callable(python_callable):
            raise TypeError(f"python_callable of task {self.task_id!r} must be callable, got {python_callable!r}")
        self.python_callable = python_callable
        self.op_args = list(op_args or [])
        self.op_kwargs = dict(op_kwargs or {})
        self.templates_dict = templates_dict
        self.show_return_value_in_logs = show_return_value_in_logs
        if templates_exts:
            self.template_ext = tuple(templates_exts)  # type: ignore[misc]

    def execute(self, context: dict[str, Any]) -> Any:
        """Call the function with its arguments and the context keys it names."""
        context["templates_dict"] = self.templates_dict
        value = self.execute_callable(context)
        if self.show_return_value_in_logs:
            print(f"Done. Returned value was: {value!r}")
        return value

    def execute_callable(self, context: dict[str, Any]) -> Any:
        """Call `python_callable` (subclasses post-process its value)."""
        return call_with_context(self.python_callable, self.op_args, self.op_kwargs, context)


class BranchPythonOperator(PythonOperator):
    """The function returns the task id (or ids, or a task group id) to follow; other direct downstream tasks skip."""

    def execute(self, context: dict[str, Any]) -> Any:
        """Call the function, then skip the branches not chosen."""
        branch = super().execute(context)
        follow_branch(context, branch)
        return branch


class ShortCircuitOperator(PythonOperator):
    """A falsy return value skips the downstream tasks.

    Args:
        ignore_downstream_trigger_rules: True (default) skips every downstream task;
            False skips only the direct ones and lets the others' trigger rules decide.
    """

    def __init__(self, *, ignore_downstream_trigger_rules: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ignore_downstream_trigger_rules = ignore_downstream_trigger_rules

    def execute(self, context: dict[str, Any]) -> Any:
        """Call the function; skip downstream when its value is falsy."""
        condition = super().execute(context)
        short_circuit(context, condition, self.ignore_downstream_trigger_rules)
        return condition
