"""Waiting without a worker: `WaitForAssetEvent` and the deferrable time sensors.

Each defers its try (`herald.sdk.waits.TaskDeferred`): the worker is free as soon
as `execute` has rendered what to wait for, and the scheduler ends the wait in
the transaction that sees the event (or the time) come. As Airflow's deferrable
operators, but the "triggerer" is the scheduler's own pass over the database,
so a wait survives any restart and resumes within one pass of its event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from herald.airflow.baseoperator import BaseOperator
from herald.airflow.runtime import PokeReturnValue
from herald.airflow.sensors import BaseSensorOperator
from herald.sdk.assets import Asset
from herald.sdk.waits import Deferral, TaskDeferred, compile_expression

__all__ = [
    "DateTimeSensor",
    "DateTimeSensorAsync",
    "TimeDeltaSensor",
    "TimeDeltaSensorAsync",
    "WaitForAssetEvent",
]

#: Airflow's default sensor timeout: a week
DEFAULT_TIMEOUT = 7 * 24 * 3600.0


def _secs(value: float | timedelta | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class WaitForAssetEvent(BaseOperator):
    """Wait, without a worker, for an event of `asset` whose payload matches `match`.

    The task's result (its XCom `return_value`) is the event that ended the wait:
    `id`, `asset`, `timestamp`, `extra`, `source` and `payload`. Events count from
    the moment the run was queued, so an approval that arrives before the task
    starts waiting is not missed.

    Args:
        asset: the asset whose events are awaited (added to the task's inlets).
        match: a JMESPath expression on the event's payload (templated: render the
            run's values into it, for example
            `"order_id == '{{ dag_run.conf.order_id }}'"`). None: the first event.
        timeout: seconds (or a timedelta) after which the try fails, and is retried
            if it has retries left; None waits for ever. A week by default, as a sensor.
        soft_fail: skip the task instead of failing it when the timeout passes.
    """

    template_fields: ClassVar[Sequence[str]] = ("match",)
    ui_color: ClassVar[str] = "#e6f1f2"

    def __init__(
        self,
        *,
        asset: Asset,
        match: str | None = None,
        timeout: float | timedelta | None = DEFAULT_TIMEOUT,
        soft_fail: bool = False,
        **kwargs: Any,
    ) -> None:
        if not isinstance(asset, Asset):
            raise TypeError(f"WaitForAssetEvent needs an Asset, got {type(asset).__name__}")
        inlets = list(kwargs.pop("inlets", None) or [])
        if asset not in inlets:
            inlets.append(asset)
        super().__init__(inlets=inlets, **kwargs)
        if match is not None and "{{" not in match and "{%" not in match:
            compile_expression(match, f"task {self.task_id!r}: match")  # a typo fails the DAG file, not the run
        self.asset = asset
        self.match = match
        self.timeout = _secs(timeout)
        if self.timeout is not None and self.timeout < 0:
            raise ValueError(f"task {self.task_id!r}: timeout must be >= 0, got {self.timeout}")
        self.soft_fail = soft_fail

    def execute(self, context: dict[str, Any]) -> Any:
        """Defer: the scheduler ends the try with the matching event."""
        match = self.match.strip() if isinstance(self.match, str) and self.match.strip() else None
        raise TaskDeferred(Deferral(asset=self.asset.name, match=match, timeout=self.timeout, soft_fail=self.soft_fail))


def _moment(value: Any, what: str) -> datetime:
    """A target time given as a datetime or an ISO string (a rendered template), in UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip())
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime or an ISO 8601 string, got {type(value).__name__}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    # a plain datetime, not pendulum's (whose sums lose their time zone in comparisons)
    return datetime.fromtimestamp(value.timestamp(), UTC)


def _defer_until(target: datetime) -> None:
    """Defer until `target`, unless it has passed (then the sensor is done at once)."""
    if target > datetime.now(UTC):
        raise TaskDeferred(Deferral(until=target))


class DateTimeSensor(BaseSensorOperator):
    """Wait until `target_time` (templated): poking in its worker, or deferred with `deferrable=True`."""

    template_fields: ClassVar[Sequence[str]] = ("target_time",)

    def __init__(self, *, target_time: str | datetime, deferrable: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(target_time, str | datetime):
            raise TypeError(
                f"task {self.task_id!r}: target_time must be a datetime or a string, got {type(target_time).__name__}"
            )
        self.target_time = target_time
        self.deferrable = deferrable

    def poke(self, context: dict[str, Any]) -> bool | PokeReturnValue:
        """True once the target time has come."""
        return datetime.now(UTC) >= _moment(self.target_time, "target_time")

    def execute(self, context: dict[str, Any]) -> Any:
        """Defer until the time (deferrable), else poke."""
        if self.deferrable:
            _defer_until(_moment(self.target_time, "target_time"))
            return None
        return super().execute(context)


class DateTimeSensorAsync(DateTimeSensor):
    """`DateTimeSensor` that always defers (Airflow 2's name for `deferrable=True`)."""

    def __init__(self, *, target_time: str | datetime, **kwargs: Any) -> None:
        kwargs.pop("deferrable", None)
        super().__init__(target_time=target_time, deferrable=True, **kwargs)


def _base_time(context: dict[str, Any]) -> datetime:
    """What a time delta counts from: the end of the run's data interval, else when the run started."""
    for key in ("data_interval_end", "run_after"):
        value = context.get(key)
        if isinstance(value, datetime):
            return _moment(value, key)
    run = context.get("dag_run")
    start = getattr(run, "start_date", None)
    return _moment(start, "start_date") if isinstance(start, datetime) else datetime.now(UTC)


class TimeDeltaSensor(BaseSensorOperator):
    """Wait `delta` after the run's data interval (or its start): poking, or deferred with `deferrable=True`."""

    def __init__(self, *, delta: timedelta, deferrable: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(delta, timedelta):
            raise TypeError(f"task {self.task_id!r}: delta must be a timedelta, got {type(delta).__name__}")
        self.delta = delta
        self.deferrable = deferrable

    def poke(self, context: dict[str, Any]) -> bool | PokeReturnValue:
        """True once the delta has passed."""
        return datetime.now(UTC) >= _base_time(context) + self.delta

    def execute(self, context: dict[str, Any]) -> Any:
        """Defer until the time (deferrable), else poke."""
        if self.deferrable:
            _defer_until(_base_time(context) + self.delta)
            return None
        return super().execute(context)


class TimeDeltaSensorAsync(TimeDeltaSensor):
    """`TimeDeltaSensor` that always defers (Airflow 2's name for `deferrable=True`)."""

    def __init__(self, *, delta: timedelta, **kwargs: Any) -> None:
        kwargs.pop("deferrable", None)
        super().__init__(delta=delta, deferrable=True, **kwargs)
