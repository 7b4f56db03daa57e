"""Schedules over time: events that must come together within a window, and keys that went silent.

`(a & b).within(60, key="order_id")` makes a run when, for one key, every asset
of the condition has an event and all of them came within 60 seconds; an event
left without its partners past the window is dropped, never a run.
`a.missing_for(300, key="device_id")` makes a run when a key that sent events
has been silent for 300 seconds: once per silence, until the key sends again.

Both are a DAG's whole schedule (not a part of `&`, `|` or a timetable). Their
state is in the database: a window's in the queued events themselves, an
absence's in the keys it has seen (`asset_key_seen`), so both hold across restarts.
Keys are JMESPath expressions on an event's payload (`herald.sdk.waits.payload_of`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from herald.sdk.assets import Asset, AssetAlias, AssetAll, AssetRef, BaseAsset
from herald.sdk.waits import compile_expression, payload_of

__all__ = ["AssetAbsence", "AssetWindow", "check_whole_schedule", "key_of", "timed"]


def _seconds(value: float | timedelta, what: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        raise ValueError(f"{what} must be a positive number of seconds (or a timedelta), got {value!r}")
    return float(seconds)


def key_of(compiled: Any, extra: dict[str, Any] | None) -> str | None:
    """The key of an event (its expression's value, as text), "" without an expression, None when it has none."""
    if compiled is None:
        return ""
    try:
        value = compiled.search(payload_of(extra))
    except Exception:  # a payload of another shape: the event has no key
        return None
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


class _Timed(BaseAsset):
    """A condition with a time span and an optional key expression."""

    def __init__(self, seconds: float | timedelta, key: str | None, what: str) -> None:
        self.seconds = _seconds(seconds, what)
        if key is not None:
            compile_expression(key, "key")
        self.key = key

    def compiled_key(self) -> Any:
        """The key expression compiled, or None."""
        return compile_expression(self.key, "key") if self.key is not None else None

    def __and__(self, other: BaseAsset) -> AssetAll:
        raise TypeError(f"{type(self).__name__} is a whole schedule: it cannot be combined with &")

    def __or__(self, other: BaseAsset) -> Any:
        raise TypeError(f"{type(self).__name__} is a whole schedule: it cannot be combined with |")


class AssetWindow(_Timed):
    """Holds for one key when every asset of `condition` has an event of that key within `seconds`.

    Made by `(a & b).within(seconds, key=...)`. The run takes the oldest such event
    of each asset.
    """

    def __init__(self, condition: BaseAsset, seconds: float | timedelta, key: str | None = None) -> None:
        super().__init__(seconds, key, "within()'s window")
        parts = condition.objects if isinstance(condition, AssetAll) else (condition,)
        if not all(isinstance(p, Asset) for p in parts):
            raise TypeError("within() takes assets joined with &, for example (a & b).within(60)")
        self.condition = condition
        self.assets: tuple[Asset, ...] = tuple(p for p in parts if isinstance(p, Asset))

    def iter_assets(self) -> Iterable[Asset]:
        return self.condition.iter_assets()

    def iter_asset_aliases(self) -> Iterable[AssetAlias]:
        return iter(())

    def iter_asset_refs(self) -> Iterable[AssetRef]:
        return iter(())

    def evaluate(self, ready: set[str]) -> bool:
        return self.condition.evaluate(ready)

    def describe(self) -> Any:
        return {"within": {"seconds": self.seconds, "key": self.key, "assets": self.condition.describe()}}

    def __repr__(self) -> str:
        return f"AssetWindow({self.condition!r}, {self.seconds:g}, key={self.key!r})"


class AssetAbsence(_Timed):
    """Holds when a key of `asset` that sent events has sent none for `seconds`.

    Made by `asset.missing_for(seconds, key=...)`. The run's conf says which key went
    silent (`key`), when it was last seen (`last_seen`, ISO 8601 UTC), the asset and
    the silence (`silent_for`, seconds); its triggering event is the key's last one.
    """

    def __init__(self, asset: Asset, seconds: float | timedelta, key: str | None = None) -> None:
        super().__init__(seconds, key, "missing_for()'s silence")
        if not isinstance(asset, Asset):
            raise TypeError("missing_for() applies to an Asset")
        self.asset = asset

    def iter_assets(self) -> Iterable[Asset]:
        yield self.asset

    def evaluate(self, ready: set[str]) -> bool:
        return False  # events never make a run by themselves: a silence does

    def describe(self) -> Any:
        return {"missing_for": {"seconds": self.seconds, "key": self.key, "asset": self.asset.name}}

    def __repr__(self) -> str:
        return f"AssetAbsence({self.asset!r}, {self.seconds:g}, key={self.key!r})"


def timed(condition: BaseAsset | None) -> bool:
    """True for a window or an absence."""
    return isinstance(condition, _Timed)


def check_whole_schedule(condition: BaseAsset, dag_id: str) -> None:
    """ValueError when a window or an absence is a part of a larger condition (it must be the whole schedule)."""
    pending: list[BaseAsset] = list(getattr(condition, "objects", ()))
    while pending:
        part = pending.pop()
        if isinstance(part, _Timed):
            raise ValueError(
                f"DAG {dag_id!r}: within() and missing_for() must be the whole schedule, not a part of & or |"
            )
        pending.extend(getattr(part, "objects", ()))
