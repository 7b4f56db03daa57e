"""Sensors: `BaseSensorOperator`, `PythonSensor` and `PokeReturnValue`, poking inside the try."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, ClassVar

from herald.airflow.baseoperator import BaseOperator
from herald.airflow.runtime import PokeReturnValue, call_with_context, run_sensor

__all__ = ["BaseSensorOperator", "PokeReturnValue", "PythonSensor"]


def _secs(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class BaseSensorOperator(BaseOperator):
    """Pokes until `poke(context)` is true (or returns a done `PokeReturnValue`).

    Args:
        poke_interval: seconds (or a timedelta) between pokes.
        timeout: seconds after which the sensor fails without retries (AirflowSensorTimeout).
        soft_fail: skip instead of failing on timeout.
        mode: "poke" (Herald runs "reschedule" as "poke": the try waits in its worker).
        exponential_backoff, max_wait: grow the interval between pokes, up to max_wait.
        never_fail: skip on any error of the poke, as on timeout.
    """

    ui_color: ClassVar[str] = "#e6f1f2"
    valid_modes: ClassVar[Sequence[str]] = ("poke", "reschedule")

    def __init__(
        self,
        *,
        poke_interval: float | timedelta = 60,
        timeout: float | timedelta = 7 * 24 * 3600,
        soft_fail: bool = False,
        mode: str = "poke",
        exponential_backoff: bool = False,
        max_wait: float | timedelta | None = None,
        silent_fail: bool = False,
        never_fail: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in self.valid_modes:
            raise ValueError(f"sensor {self.task_id!r}: mode must be one of {list(self.valid_modes)}, got {mode!r}")
        if mode == "reschedule" and self.dag is not None:
            self.dag.warn(f"task {self.task_id!r}: mode='reschedule' runs as 'poke' (the try waits in its worker)")
        self.poke_interval = _secs(poke_interval)
        self.timeout = _secs(timeout)
        if self.poke_interval < 0 or self.timeout < 0:
            raise ValueError(f"sensor {self.task_id!r}: poke_interval and timeout must be >= 0")
        self.soft_fail = soft_fail
        self.mode = mode
        self.exponential_backoff = exponential_backoff
        self.max_wait = _secs(max_wait) if max_wait is not None else None
        self.silent_fail = silent_fail
        self.never_fail = never_fail

    def poke(self, context: dict[str, Any]) -> bool | PokeReturnValue:
        """One check: true (or a done PokeReturnValue) when the condition holds."""
        raise NotImplementedError(f"{type(self).__name__} must implement poke(self, context)")

    def execute(self, context: dict[str, Any]) -> Any:
        """Poke until done; the result is the PokeReturnValue's xcom_value."""
        return run_sensor(
            lambda: self.poke(context),
            poke_interval=self.poke_interval,
            timeout=self.timeout,
            soft_fail=self.soft_fail,
            never_fail=self.never_fail,
            exponential_backoff=self.exponential_backoff,
            max_wait=self.max_wait,
        )


class PythonSensor(BaseSensorOperator):
    """Pokes a Python function until it returns a true value (or a done PokeReturnValue).

    Args:
        python_callable: the function; context keys by parameter name, as PythonOperator.
        op_args, op_kwargs, templates_dict: as PythonOperator (templated).
    """

    template_fields: ClassVar[Sequence[str]] = ("templates_dict", "op_args", "op_kwargs")

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Sequence[Any] | None = None,
        op_kwargs: dict[str, Any] | None = None,
        templates_dict: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.python_callable = python_callable
        self.op_args = list(op_args or [])
        self.op_kwargs = dict(op_kwargs or {})
        self.templates_dict = templates_dict

    def poke(self, context: dict[str, Any]) -> bool | PokeReturnValue:
        """Call the function once."""
        context["templates_dict"] = self.templates_dict
        value = call_with_context(self.python_callable, self.op_args, self.op_kwargs, context)
        return value if isinstance(value, PokeReturnValue) else bool(value)
