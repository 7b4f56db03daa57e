"""Airflow's time triggers for `BaseOperator.defer`: `DateTimeTrigger` and `TimeDeltaTrigger`.

In Airflow a deferred operator's trigger runs in the triggerer process; in Herald
the scheduler's own pass ends a time wait (`herald.sdk.waits.Deferral` with
`until`), kept in the database, so it survives restarts and holds no worker.
When the time comes the try resumes in the method the operator named, under the
same try number, with `event` set to the moment (a pendulum DateTime, as
Airflow's trigger yields) — or, with `end_from_trigger=True`, ends as success
without resuming.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from herald.sdk.waits import Deferral

__all__ = ["DateTimeTrigger", "TimeDeltaTrigger"]


def _seconds(timeout: Any) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, timedelta):
        return timeout.total_seconds()
    return float(timeout)


class DateTimeTrigger:
    """Fires once, at `moment` (a timezone-aware datetime), or at `target_time` (ISO text).

    Args:
        moment: when to fire; naive datetimes are refused, as in Airflow.
        target_time: the same as text (for example a rendered template), instead of `moment`.
        end_from_trigger: end the task as success at that time instead of resuming it.
    """

    def __init__(
        self,
        moment: datetime | None = None,
        *,
        target_time: datetime | str | None = None,
        end_from_trigger: bool = False,
    ) -> None:
        if (moment is None) == (target_time is None):
            raise TypeError("DateTimeTrigger takes exactly one of 'moment' or 'target_time'")
        if moment is None:
            moment = target_time if isinstance(target_time, datetime) else _parse(str(target_time))
        if not isinstance(moment, datetime):
            raise TypeError(f"DateTimeTrigger's moment must be a datetime, got {type(moment).__name__}")
        if moment.tzinfo is None:
            raise ValueError("DateTimeTrigger needs a timezone-aware datetime (naive datetimes are ambiguous)")
        self.moment = moment.astimezone(UTC)
        self.end_from_trigger = end_from_trigger

    def to_deferral(self, method: str | None, kwargs: Mapping[str, Any] | None, timeout: Any) -> Deferral:
        """The wait Herald's scheduler keeps for `self.defer(trigger=this, method_name=method, ...)`."""
        return Deferral(
            until=self.moment,
            timeout=_seconds(timeout),
            method=None if self.end_from_trigger else method,
            kwargs=dict(kwargs or {}),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(moment={self.moment.isoformat()})"


class TimeDeltaTrigger(DateTimeTrigger):
    """Fires `delta` after it is made (when the operator defers)."""

    def __init__(self, delta: timedelta, *, end_from_trigger: bool = False) -> None:
        if not isinstance(delta, timedelta):
            raise TypeError(f"TimeDeltaTrigger's delta must be a timedelta, got {type(delta).__name__}")
        super().__init__(moment=datetime.now(UTC) + delta, end_from_trigger=end_from_trigger)


def _parse(text: str) -> datetime:
    import pendulum

    parsed = pendulum.parse(text)
    if not isinstance(parsed, datetime):
        raise ValueError(f"DateTimeTrigger's target_time {text!r} is not a date and time")
    return parsed
