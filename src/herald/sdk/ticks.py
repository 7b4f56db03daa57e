"""The times a time-scheduled DAG runs at: the ticks of a cron expression, a fixed period, or once.

Airflow 3 reads `schedule="0 6 * * *"` as a `CronTriggerTimetable`, `schedule=timedelta(...)`
as a `DeltaTriggerTimetable` and `schedule="@once"` as one run at `start_date`. The
scheduler needs three questions answered about any of them, whatever the kind:
the tick after a tick, the first tick at or after a time, the last tick at or before
a time. A period has no grid: its ticks are counted from the previous run (or from
`start_date`), so "at or after" and "at or before" a time are that time itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

_EPSILON = timedelta(microseconds=1)


@dataclass(frozen=True)
class Ticks:
    """One of: `cron` (read in `timezone`), `every` (a period), or `once`."""

    cron: str | None = None
    every: timedelta | None = None
    once: bool = False
    timezone: str = "UTC"

    def after(self, tick: datetime) -> datetime | None:
        """The tick that follows `tick` (None: there is none, as for `@once`)."""
        if self.once:
            return None
        if self.every is not None:
            return tick + self.every
        return self._cron_next(tick)

    def at_or_after(self, when: datetime) -> datetime:
        """The first tick at or after `when` (a period or `@once` starts at `when` itself)."""
        if self.cron is None:
            return when
        return self._cron_next(when - _EPSILON)

    def at_or_before(self, when: datetime) -> datetime:
        """The last tick at or before `when` (a period's is `when` itself)."""
        if self.cron is None:
            return when
        from croniter import croniter

        local = (when + _EPSILON).astimezone(ZoneInfo(self.timezone))
        value: datetime = croniter(self.cron, local).get_prev(datetime)
        return value.astimezone(UTC).replace(fold=0)

    def first_run(self, now: datetime) -> datetime:
        """Without a start_date: a cron schedule's tick just past if it is recent (a tenth of
        the gap, at least five minutes, as Airflow), else the next one; a period starts now."""
        if self.cron is None:
            return now
        past, upcoming = self.at_or_before(now), self._cron_next(now)
        buffer = max((upcoming - past) / 10, timedelta(minutes=5))
        return past if now - past <= buffer else upcoming

    def _cron_next(self, after: datetime) -> datetime:
        from croniter import croniter

        assert self.cron is not None
        value: datetime = croniter(self.cron, after.astimezone(ZoneInfo(self.timezone))).get_next(datetime)
        return value.astimezone(UTC).replace(fold=0)
