"""What a running task sees: its triggering events, its run, and its outlets."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from herald.sdk.assets import Asset


@dataclass(frozen=True)
class AssetEvent:
    """One update of an asset: a message turned into an event, or a task's outlet.

    Attributes:
        id: the event's id in the metadata database.
        asset: the asset it updates.
        timestamp: when it was stored (UTC).
        extra: `payload` (the decoded message) and `message` (where it came from).
        source: `watcher:NAME`, `task:DAG.TASK`, `api` or `cli`.
    """

    id: int
    asset: Asset
    timestamp: datetime
    extra: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def payload(self) -> Any:
        """Shortcut for `extra["payload"]`."""
        return self.extra.get("payload")


@dataclass(frozen=True)
class DagRun:
    """The run a task belongs to. Runs have no logical date: many run at once."""

    run_id: str
    dag_id: str
    run_type: str
    conf: dict[str, Any] = field(default_factory=dict)
    start_date: datetime | None = None
    logical_date: None = None


class OutletEventAccessor:
    """Lets a task set the `extra` of the event its outlet will emit."""

    def __init__(self, asset: Asset) -> None:
        self.asset = asset
        self.extra: dict[str, Any] = {}


class OutletEvents:
    """`outlet_events[asset].extra = {...}` inside a task with `outlets=[asset]`."""

    def __init__(self, outlets: list[Asset]) -> None:
        self._by_name = {asset.name: OutletEventAccessor(asset) for asset in outlets}

    def __getitem__(self, asset: Asset | str) -> OutletEventAccessor:
        name = asset if isinstance(asset, str) else asset.name
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{name!r} is not an outlet of this task; add it to @task(outlets=[...])") from None

    def __iter__(self) -> Iterator[OutletEventAccessor]:
        return iter(self._by_name.values())

    def extras(self) -> dict[str, dict[str, Any]]:
        """The extra set for each outlet, by asset name."""
        return {name: acc.extra for name, acc in self._by_name.items()}


class TriggeringAssetEvents(dict[Asset, list[AssetEvent]]):
    """Events that caused the run, by asset; indexable by Asset or by asset name."""

    def __getitem__(self, key: Asset | str) -> list[AssetEvent]:
        if isinstance(key, str):
            key = Asset(key)
        try:
            return super().__getitem__(key)
        except KeyError:
            return []


Context = dict[str, Any]
_current: contextvars.ContextVar[Context | None] = contextvars.ContextVar("herald_context", default=None)


def get_current_context() -> Context:
    """The running task's context: the same values tasks get by parameter name."""
    context = _current.get()
    if context is None:
        raise RuntimeError("get_current_context() works only inside a running task")
    return context


def set_current_context(context: Context | None) -> contextvars.Token[Context | None]:
    """Install the context of the task about to run (used by the worker)."""
    return _current.set(context)
