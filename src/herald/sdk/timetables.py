"""Timetables by Airflow's names: cron, assets, and the two combined.

- `CronTriggerTimetable("0 * * * *", timezone="UTC")`: a run at every tick of the cron expression.
- `AssetTriggeredTimetable(assets, batch_asset_events=...)`: runs when the asset
  condition holds; Airflow 3's per-DAG choice between one run per event
  (`batch_asset_events=False`, Herald's default too) and one run taking every
  event queued so far (`True`). Conditions that need several assets (`a & b`)
  always batch, as in Airflow: `False` is refused for them.
- `AssetOrTimeSchedule(timetable=..., assets=...)`: a run at every tick, and runs
  whenever the asset condition holds (each as it would alone).
- `AssetAndTimeSchedule(timetable=..., assets=...)`: a run at a tick only once the
  asset condition holds; a tick whose assets are not ready waits for them, and
  the run consumes the events that made it ready.

`DAG(schedule=...)` takes each of them; Herald's own `EventBatch(max_events,
max_wait)` (`DAG(batch=...)`) is the finer-grained form of `batch_asset_events`.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta
from typing import Any

from herald.sdk.assets import AssetAll, BaseAsset, _AssetBoolean


class CronTriggerTimetable:
    """A run at each tick of `cron` in `timezone`.

    Args:
        cron: a cron expression (`"0 6 * * *"`) or a preset (`"@daily"`).
        timezone: the IANA time zone the expression is read in.
        interval: the length of each run's data interval (ending at the tick).
        run_immediately: refused unless False (a first run at once changes what runs).
    """

    def __init__(
        self, cron: str, *, timezone: str = "UTC", interval: timedelta = timedelta(), run_immediately: bool = False
    ) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from croniter import croniter

        if not isinstance(cron, str) or not croniter.is_valid(cron):
            raise ValueError(f"{cron!r} is not a valid cron expression (for example '*/5 * * * *' or '@daily')")
        try:
            ZoneInfo(str(timezone))
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {timezone!r}") from None
        if not isinstance(interval, timedelta) or interval < timedelta():
            raise ValueError(f"interval must be a timedelta >= 0, got {interval!r}")
        if run_immediately:
            raise ValueError("run_immediately is not supported: the first run is at the first tick")
        self.cron = cron
        self.timezone = str(timezone)
        self.interval = interval

    def describe(self) -> dict[str, Any]:
        """The timetable as JSON."""
        return {"cron": self.cron, "timezone": self.timezone, "interval": self.interval.total_seconds()}

    def __repr__(self) -> str:
        return f"CronTriggerTimetable({self.cron!r}, timezone={self.timezone!r})"


class DeltaTriggerTimetable:
    """A run every `delta`: Airflow 3's meaning of `schedule=timedelta(...)`.

    The first run is at `start_date` (with `catchup=True`) or now, each next one
    `delta` after the previous: a period is counted from runs, not on a clock grid.

    Args:
        delta: the time between runs (a `timedelta`, or pendulum's `duration`).
        interval: the length of each run's data interval (ending at the run's time).
    """

    def __init__(self, delta: timedelta, *, interval: timedelta = timedelta()) -> None:
        if not isinstance(delta, timedelta):
            raise TypeError(
                f"DeltaTriggerTimetable takes a timedelta, got {type(delta).__name__}; "
                "for calendar periods (relativedelta) use a cron string"
            )
        if delta <= timedelta():
            raise ValueError(f"DeltaTriggerTimetable's delta must be positive, got {delta!r}")
        if not isinstance(interval, timedelta) or interval < timedelta():
            raise ValueError(f"interval must be a timedelta >= 0, got {interval!r}")
        self.delta = delta
        self.interval = interval

    def describe(self) -> dict[str, Any]:
        """The timetable as JSON."""
        return {"every": self.delta.total_seconds(), "interval": self.interval.total_seconds()}

    def __repr__(self) -> str:
        return f"DeltaTriggerTimetable({self.delta!r})"


#: the timetables that make runs at times (alone, or with assets)
TimeTimetable = CronTriggerTimetable | DeltaTriggerTimetable


def _timetable(value: Any) -> TimeTimetable:
    if isinstance(value, str):
        return CronTriggerTimetable(value)
    if isinstance(value, timedelta):
        return DeltaTriggerTimetable(value)
    if not isinstance(value, CronTriggerTimetable | DeltaTriggerTimetable):
        raise TypeError(
            "timetable must be a CronTriggerTimetable, a DeltaTriggerTimetable, a cron string or a timedelta, "
            f"got {type(value).__name__}"
        )
    return value


def _condition(assets: Collection[BaseAsset] | BaseAsset) -> BaseAsset:
    if isinstance(assets, BaseAsset):
        return assets
    items = list(assets)
    if not items or not all(isinstance(a, BaseAsset) for a in items):
        raise TypeError("assets must be an asset, an asset expression, or a non-empty list of assets")
    return items[0] if len(items) == 1 else AssetAll(*items)


def batching_requirement(condition: BaseAsset) -> str | None:
    """Why this condition cannot run one event at a time (an AND of several parts), or None."""
    pending = [condition]
    while pending:
        current = pending.pop()
        if isinstance(current, AssetAll) and len(current.objects) > 1:
            return "Asset AND conditions require batch_asset_events=True"
        if isinstance(current, _AssetBoolean):
            pending.extend(current.objects)
    return None


class AssetTriggeredTimetable:
    """Runs when the asset condition holds, one per event or one per batch of queued events.

    Args:
        assets: an asset, a list of assets (all of them), or an expression.
        batch_asset_events: True to consume every queued event in one run; False
            for a run per event. By default False, except for conditions that need
            several assets (`a & b`), which always batch (False is refused for them).
    """

    def __init__(self, assets: Collection[BaseAsset] | BaseAsset, *, batch_asset_events: bool | None = None) -> None:
        self.asset_condition = _condition(assets)
        required = batching_requirement(self.asset_condition)
        if batch_asset_events is None:
            batch_asset_events = required is not None
        elif not batch_asset_events and required is not None:
            raise ValueError(required)
        self.batch_asset_events = bool(batch_asset_events)

    def describe(self) -> dict[str, Any]:
        """The schedule as JSON."""
        return {"assets": self.asset_condition.describe(), "batch_asset_events": self.batch_asset_events}


class AssetOrTimeSchedule(AssetTriggeredTimetable):
    """Runs at every tick of `timetable`, and whenever `assets` have new events.

    Args:
        timetable: a `CronTriggerTimetable` or `DeltaTriggerTimetable` (or a cron string, or a timedelta).
        assets: an asset, a list of assets (all of them), or an expression.
        batch_asset_events: as for `AssetTriggeredTimetable`, for the asset-triggered runs.
    """

    def __init__(
        self,
        *,
        timetable: TimeTimetable | str | timedelta,
        assets: Collection[BaseAsset] | BaseAsset,
        batch_asset_events: bool | None = None,
    ) -> None:
        super().__init__(assets, batch_asset_events=batch_asset_events)
        self.timetable = _timetable(timetable)

    def describe(self) -> dict[str, Any]:
        """The schedule as JSON."""
        return {
            "asset_or_time": {
                "timetable": self.timetable.describe(),
                "assets": self.asset_condition.describe(),
                "batch_asset_events": self.batch_asset_events,
            }
        }


class AssetAndTimeSchedule:
    """Runs at a tick of `timetable` once `assets` have new events; a tick waits for them.

    Args:
        timetable: a `CronTriggerTimetable` or `DeltaTriggerTimetable` (or a cron string, or a timedelta).
        assets: an asset, a list of assets (all of them), or an expression.
    """

    def __init__(
        self, *, timetable: TimeTimetable | str | timedelta, assets: Collection[BaseAsset] | BaseAsset
    ) -> None:
        self.timetable = _timetable(timetable)
        self.asset_condition = _condition(assets)

    def describe(self) -> dict[str, Any]:
        """The schedule as JSON."""
        return {"asset_and_time": {"timetable": self.timetable.describe(), "assets": self.asset_condition.describe()}}
