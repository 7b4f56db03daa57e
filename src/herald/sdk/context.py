"""What a running task sees: its triggering events and its run (outlets and inlets: `sdk.asset_events`)."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from herald.sdk.asset_events import AssetEvent as AssetEvent  # its home is sdk/asset_events.py
from herald.sdk.assets import Asset, AssetAlias, AssetNameRef, AssetRef, AssetUriRef


@dataclass(frozen=True)
class DagRun:
    """The run a task belongs to.

    Event-driven runs have no logical date (many run at once); cron runs have the
    time of their cron tick as logical date and data interval, as Airflow 3's cron
    schedules do; manual runs, the time they were triggered.
    """

    run_id: str
    dag_id: str
    run_type: str
    conf: dict[str, Any] = field(default_factory=dict)
    start_date: datetime | None = None
    logical_date: datetime | None = None
    data_interval_start: datetime | None = None
    data_interval_end: datetime | None = None
    run_after: datetime | None = None
    #: set in a DAG callback's context (the run has ended); None while its tasks run
    state: str | None = None
    end_date: datetime | None = None


class TriggeringAssetEvents(dict[Asset, list[AssetEvent]]):
    """Events that caused the run, by asset.

    Indexable by `Asset`, by asset name, by `Asset.ref(name=...)`/`Asset.ref(uri=...)`,
    and by `AssetAlias` (the events emitted through that alias), as Airflow's
    `triggering_asset_events` is. A key the run has no events of gives `[]`.
    """

    def __getitem__(self, key: Asset | AssetAlias | AssetRef | str) -> list[AssetEvent]:
        if isinstance(key, AssetAlias):
            return [e for events in self.values() for e in events if key.name in {a.name for a in e.source_aliases}]
        if isinstance(key, AssetUriRef):
            return [e for asset, events in self.items() if asset.uri == key.uri for e in events]
        name = key.name if isinstance(key, AssetNameRef | Asset) else key
        if not isinstance(name, str):
            raise TypeError(f"triggering_asset_events[...] takes an Asset, an AssetAlias or a name, got {key!r}")
        try:
            return super().__getitem__(Asset(name))
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
