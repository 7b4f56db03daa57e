"""Asset events as a task sees them: the events that caused its run, its inlets' events, and its outlets.

Wire forms (what a try request carries and what a try result returns), each
read and written here only:

- an event: `AssetEvent.to_wire()`: `{"id", "asset": {"name", "uri", "group",
  "extra"}, "timestamp" (ISO 8601), "extra", "source", "source_dag_id",
  "source_task_id", "source_run_id", "source_map_index", "source_aliases":
  [{"name", "group"}]}`;
- a try request's inlets: `request["inlet_events"]` =
  `{"assets": {NAME: {"asset": <asset>, "events": [<event>, ...]}},
  "aliases": {NAME: [<event>, ...]}}`, events oldest first (see `InletEventsAccessors.from_wire`);
- a try result's outlets: `OutletEventAccessors.to_wire()` = `{"extras": {ASSET_NAME: extra},
  "alias_events": [{"alias": {"name", "group"}, "asset": <asset>, "extra": {...}}]}`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, overload

from herald.sdk.assets import Asset, AssetAlias, AssetNameRef, AssetRef, AssetUriRef, Metadata

log = logging.getLogger("herald.task")


@dataclass(frozen=True)
class AssetEvent:
    """One update of an asset: a message turned into an event, a task's outlet, or an API call.

    Attributes:
        id: the event's id in the metadata database.
        asset: the asset it updates (`name`, `uri`, `group`, `extra`).
        timestamp: when it was stored (UTC).
        extra: `payload` (the decoded message) and `message` (where it came
            from) for a watcher's event; what the task set for a task's event.
        source: `watcher:ID` (the watcher's row id), `task:DAG.TASK`, `api` or `cli`.
        source_dag_id: the DAG of the task that emitted it; None unless a task did.
        source_task_id: the task that emitted it; None unless a task did.
        source_run_id: the run of that task; None unless a task did.
        source_map_index: the map index of that task (-1 when not mapped); None unless a task did.
        source_aliases: the aliases the event was emitted through.
    """

    id: int
    asset: Asset
    timestamp: datetime
    extra: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    source_dag_id: str | None = None
    source_task_id: str | None = None
    source_run_id: str | None = None
    source_map_index: int | None = None
    source_aliases: tuple[AssetAlias, ...] = ()

    @property
    def payload(self) -> Any:
        """Shortcut for `extra["payload"]`."""
        return self.extra.get("payload")

    def to_wire(self) -> dict[str, Any]:
        """The event as JSON (see the module's documentation)."""
        return {
            "id": self.id,
            "asset": self.asset.to_wire(),
            "timestamp": self.timestamp.isoformat(),
            "extra": self.extra,
            "source": self.source,
            "source_dag_id": self.source_dag_id,
            "source_task_id": self.source_task_id,
            "source_run_id": self.source_run_id,
            "source_map_index": self.source_map_index,
            "source_aliases": [alias.to_wire() for alias in self.source_aliases],
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> AssetEvent:
        """The event from its JSON form.

        Also reads the form today's scheduler sends (`"asset"` a name, `"uri"`
        beside it) and takes a task event's `source_*` from the `source_run`
        its extra holds when the fields themselves are absent.
        """
        raw_asset = data["asset"]
        asset = (
            Asset.from_wire(dict(raw_asset))
            if isinstance(raw_asset, Mapping)
            else Asset(raw_asset, uri=data.get("uri"))
        )
        extra = dict(data.get("extra") or {})
        source = str(data.get("source") or "")
        origin: Mapping[str, Any] = {}
        if source.startswith("task:") and isinstance(extra.get("source_run"), Mapping):
            origin = extra["source_run"]
        timestamp = data["timestamp"]
        map_index = data.get("source_map_index")
        if map_index is None and origin:
            map_index = origin.get("map_index", -1)
        return cls(
            id=int(data["id"]),
            asset=asset,
            timestamp=timestamp if isinstance(timestamp, datetime) else datetime.fromisoformat(timestamp),
            extra=extra,
            source=source,
            source_dag_id=data.get("source_dag_id") or origin.get("dag_id"),
            source_task_id=data.get("source_task_id") or origin.get("task_id"),
            source_run_id=data.get("source_run_id") or origin.get("run_id"),
            source_map_index=None if map_index is None else int(map_index),
            source_aliases=tuple(
                AssetAlias(a["name"], a.get("group", "asset")) for a in data.get("source_aliases") or ()
            ),
        )


# -- outlets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssetAliasEvent:
    """An event a task attached to an alias: `outlet_events[alias].add(asset, extra=...)`."""

    alias: AssetAlias
    asset: Asset
    extra: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        """`{"alias": {...}, "asset": {...}, "extra": {...}}`."""
        return {"alias": self.alias.to_wire(), "asset": self.asset.to_wire(), "extra": self.extra}


class OutletEventAccessor:
    """One outlet of the running task: `.extra` of its event, or `.add(...)` events through an alias."""

    def __init__(self, key: Asset | AssetAlias) -> None:
        self.key = key
        self.extra: dict[str, Any] = {}
        self.asset_alias_events: list[AssetAliasEvent] = []

    def add(self, asset: Asset, extra: dict[str, Any] | None = None) -> None:
        """Emit an event of `asset` through this alias when the task succeeds.

        Raises:
            TypeError: when this outlet is an asset (set `.extra` instead), or `asset` is not an Asset.
        """
        if not isinstance(self.key, AssetAlias):
            raise TypeError(
                f"add() emits events through an AssetAlias; {self.key!r} is an asset: set "
                f"outlet_events[asset].extra[...] instead"
            )
        if not isinstance(asset, Asset):
            raise TypeError(f"outlet_events[alias].add() needs an Asset, got {type(asset).__name__}")
        if extra is not None and not isinstance(extra, dict):
            raise TypeError(f"extra must be a dict, got {type(extra).__name__}")
        self.asset_alias_events.append(AssetAliasEvent(self.key, asset, dict(extra or {})))

    def __repr__(self) -> str:
        return f"OutletEventAccessor({self.key!r}, extra={self.extra!r})"


class OutletEventAccessors(Mapping[Asset | AssetAlias, OutletEventAccessor]):
    """`outlet_events[asset].extra[...] = ...` and `outlet_events[alias].add(Asset(...))` inside a task.

    Only the task's outlets can be addressed: setting the extra of an asset the
    task does not emit would be lost, so it is an error that names the fix.

    Args:
        outlets: the task's outlets, assets and aliases.
    """

    def __init__(self, outlets: Sequence[Asset | AssetAlias]) -> None:
        self._assets: dict[str, OutletEventAccessor] = {}
        self._aliases: dict[str, OutletEventAccessor] = {}
        for outlet in outlets:
            if isinstance(outlet, AssetAlias):
                self._aliases.setdefault(outlet.name, OutletEventAccessor(outlet))
            elif isinstance(outlet, Asset):
                self._assets.setdefault(outlet.name, OutletEventAccessor(outlet))
            else:
                raise TypeError(f"outlets must be Assets or AssetAliases, got {outlet!r}")

    def __getitem__(self, key: Asset | AssetAlias | AssetRef | str) -> OutletEventAccessor:
        if isinstance(key, AssetAlias):
            found = self._aliases.get(key.name)
        elif isinstance(key, Asset | AssetNameRef):
            found = self._assets.get(key.name)
        elif isinstance(key, AssetUriRef):
            found = next((acc for acc in self._assets.values() if acc.key.uri == key.uri), None)  # type: ignore[union-attr]
        elif isinstance(key, str):
            found = self._assets.get(key)
        else:
            raise TypeError(f"Key should be either an asset or an asset alias, not {type(key).__name__}")
        if found is None:
            raise KeyError(f"{key!r} is not an outlet of this task; add it to @task(outlets=[...])")
        return found

    def __iter__(self) -> Iterator[Asset | AssetAlias]:
        for accessor in [*self._assets.values(), *self._aliases.values()]:
            yield accessor.key

    def __len__(self) -> int:
        return len(self._assets) + len(self._aliases)

    def for_asset(self, *, name: str | None = None, uri: str | None = None) -> OutletEventAccessor:
        """The outlet of the asset with this name or URI."""
        if name:
            return self[Asset.ref(name=name)]
        if uri:
            return self[Asset.ref(uri=uri)]
        raise ValueError("name and uri cannot both be None")

    def for_asset_alias(self, *, name: str) -> OutletEventAccessor:
        """The outlet of the alias with this name."""
        return self[AssetAlias(name)]

    def apply(self, metadata: Metadata) -> None:
        """Take a `Metadata` a task yielded: the extra of its asset's event, and its alias event."""
        self[metadata.asset].extra.update(metadata.extra)
        if metadata.alias is not None:
            self[metadata.alias].add(metadata.asset, extra=metadata.extra)

    def extras(self) -> dict[str, dict[str, Any]]:
        """The extra set for each asset outlet, by asset name."""
        return {name: acc.extra for name, acc in self._assets.items()}

    def alias_events(self) -> list[AssetAliasEvent]:
        """The events added through aliases, in the order the task added them."""
        return [event for acc in self._aliases.values() for event in acc.asset_alias_events]

    def to_wire(self) -> dict[str, Any]:
        """What a try result returns (see the module's documentation)."""
        return {"extras": self.extras(), "alias_events": [e.to_wire() for e in self.alias_events()]}


def call_collecting_metadata(
    function: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any], outlets: OutletEventAccessors
) -> Any:
    """Call a task's function; if it is a generator, take the `Metadata` it yields.

    A task that yields `Metadata(asset, extra=...)` sets its outlet events'
    extra; its result is what the generator returns. Anything else it yields
    is logged and ignored, as Airflow does.
    """
    if not inspect.isgeneratorfunction(function):
        return function(*args, **kwargs)
    generator = function(*args, **kwargs)
    while True:
        try:
            item = next(generator)
        except StopIteration as stop:
            return stop.value
        if isinstance(item, Metadata):
            outlets.apply(item)
        else:
            log.warning("ignoring a %s the task yielded: a task yields Metadata(...) only", type(item).__name__)


def collect_metadata(value: Any, outlets: OutletEventAccessors) -> Any:
    """A task's result, after taking the `Metadata` it yielded when it is a generator.

    `@task` functions and `python_callable`s that `yield Metadata(asset, extra=...)`
    return a generator; it is run to its end here, each `Metadata` setting its
    outlet event's extra, and the generator's return value becomes the result.
    """
    if not inspect.isgenerator(value):
        return value
    while True:
        try:
            item = next(value)
        except StopIteration as stop:
            return stop.value
        if isinstance(item, Metadata):
            outlets.apply(item)
        else:
            log.warning("ignoring a %s the task yielded: a task yields Metadata(...) only", type(item).__name__)


# -- inlets ----------------------------------------------------------------------------------


class InletEventsAccessor(Sequence[AssetEvent]):
    """The recent events of one inlet, oldest first: `events[-1]` is the newest; slices work."""

    def __init__(self, events: Sequence[AssetEvent]) -> None:
        self._events = list(events)

    @overload
    def __getitem__(self, index: int) -> AssetEvent: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[AssetEvent]: ...

    def __getitem__(self, index: int | slice) -> AssetEvent | Sequence[AssetEvent]:
        return self._events[index]

    def __len__(self) -> int:
        return len(self._events)

    def __repr__(self) -> str:
        return f"InletEventsAccessor({self._events!r})"


class InletEventsAccessors(Mapping[Asset | AssetAlias, InletEventsAccessor]):
    """`inlet_events[asset]`: the recent events of a task's inlets (`@task(inlets=[...])`).

    Indexable by the inlet (an `Asset`, an `AssetAlias`, `Asset.ref(...)`) or by
    its position in `inlets`. The events come with the try request, read from
    the metadata database when the try was queued.

    Args:
        inlets: the task's inlets.
        assets: the inlet assets as stored (resolving references), by name.
        events: each inlet asset's events, by asset name, oldest first.
        alias_events: events emitted through each inlet alias, by alias name, oldest first.
    """

    def __init__(
        self,
        inlets: Sequence[Asset | AssetAlias | AssetRef],
        assets: Mapping[str, Asset] | None = None,
        events: Mapping[str, Sequence[AssetEvent]] | None = None,
        alias_events: Mapping[str, Sequence[AssetEvent]] | None = None,
    ) -> None:
        self._inlets = list(inlets)
        self._assets = dict(assets or {})
        for inlet in self._inlets:
            if isinstance(inlet, Asset):
                self._assets.setdefault(inlet.name, inlet)
        self._events = {name: list(found) for name, found in (events or {}).items()}
        self._alias_events = {name: list(found) for name, found in (alias_events or {}).items()}

    @classmethod
    def from_wire(
        cls, inlets: Sequence[Asset | AssetAlias | AssetRef], data: Mapping[str, Any]
    ) -> InletEventsAccessors:
        """The accessors from `request["inlet_events"]` (see the module's documentation)."""
        assets: dict[str, Asset] = {}
        events: dict[str, list[AssetEvent]] = {}
        for name, entry in (data.get("assets") or {}).items():
            assets[name] = Asset.from_wire(entry["asset"]) if entry.get("asset") else Asset(name)
            events[name] = [AssetEvent.from_wire(e) for e in entry.get("events") or ()]
        aliases = {
            name: [AssetEvent.from_wire(e) for e in found] for name, found in (data.get("aliases") or {}).items()
        }
        return cls(inlets, assets, events, aliases)

    def _asset_for(self, inlet: Asset | AssetRef) -> Asset | None:
        if isinstance(inlet, Asset | AssetNameRef):
            return self._assets.get(inlet.name)
        if isinstance(inlet, AssetUriRef):
            return next((a for a in self._assets.values() if a.uri == inlet.uri), None)
        return None

    def __getitem__(self, key: int | Asset | AssetAlias | AssetRef) -> InletEventsAccessor:
        if isinstance(key, int) and not isinstance(key, bool):
            obj: Any = self._inlets[key]
        else:
            obj = key
        if isinstance(obj, AssetAlias):
            if obj not in self._inlets:
                raise KeyError(f"{obj!r} is not an inlet of this task; add it to @task(inlets=[...])")
            return InletEventsAccessor(self._alias_events.get(obj.name, []))
        if isinstance(obj, Asset | AssetRef):
            asset = self._asset_for(obj)
            if asset is None or not any(self._matches(inlet, asset) for inlet in self._inlets):
                raise KeyError(f"{obj!r} is not an inlet of this task; add it to @task(inlets=[...])")
            return InletEventsAccessor(self._events.get(asset.name, []))
        raise TypeError(f"`key` is of unknown type ({type(key).__name__})")

    @staticmethod
    def _matches(inlet: Asset | AssetAlias | AssetRef, asset: Asset) -> bool:
        if isinstance(inlet, Asset | AssetNameRef):
            return inlet.name == asset.name
        if isinstance(inlet, AssetUriRef):
            return inlet.uri == asset.uri
        return False

    def __iter__(self) -> Iterator[Asset | AssetAlias]:
        for inlet in self._inlets:
            if isinstance(inlet, AssetRef):
                asset = self._asset_for(inlet)
                if asset is not None:
                    yield asset
            else:
                yield inlet

    def __len__(self) -> int:
        return len(self._inlets)

    def asset(self, name: str) -> Asset | None:
        """The inlet asset named `name` as stored (its URI, group and extra), if it is an inlet."""
        return self._assets.get(name)

    def for_asset(self, *, name: str | None = None, uri: str | None = None) -> InletEventsAccessor:
        """The events of the inlet asset with this name or URI."""
        if name:
            return self[Asset.ref(name=name)]
        if uri:
            return self[Asset.ref(uri=uri)]
        raise ValueError("name and uri cannot both be None")

    def for_asset_alias(self, *, name: str) -> InletEventsAccessor:
        """The events emitted through the inlet alias with this name."""
        alias = next((i for i in self._inlets if isinstance(i, AssetAlias) and i.name == name), None)
        if alias is None:
            raise KeyError(f"AssetAlias {name!r} is not an inlet of this task")
        return self[alias]
