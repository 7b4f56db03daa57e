"""Assets, references to assets, asset aliases, and the conditions that combine them into a schedule.

Names and rules follow Airflow 3's `airflow.sdk` so that a DAG ports by its
imports: `Asset(name)`, `Asset(uri=...)` (the name is then the URI as given),
`Asset(name, uri)`, `Asset.ref(name=...)`, `AssetAlias(name)`, `a & b`, `a | b`.
"""

from __future__ import annotations

import urllib.parse
import warnings
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from herald.sdk.asset_windows import AssetAbsence, AssetWindow
    from herald.sdk.watcher import AssetWatcher

#: longest name, URI or group Airflow accepts (and the asset table stores)
MAX_IDENTIFIER = 1500
#: names an asset may not have: `@asset` functions receive `self` and `context` by these names
_RESERVED_NAMES = frozenset({"self", "context"})


def _identifier(kind: str, what: str, value: object, *, empty_ok: bool = False) -> str:
    """`value` checked as Airflow checks asset identifiers: a string, not blank, at most 1500 characters."""
    if not isinstance(value, str):
        raise ValueError(f"{kind} {what} must be a string, got {type(value).__name__}")
    if len(value) > MAX_IDENTIFIER:
        raise ValueError(f"{kind} {what} cannot exceed {MAX_IDENTIFIER} characters")
    if not value and not empty_ok:
        raise ValueError(f"{kind} {what} cannot be empty")
    if value and value.isspace():
        raise ValueError(f"{kind} {what} cannot be just whitespace")
    if any(ord(ch) < 32 for ch in value):
        raise ValueError(f"{kind} {what} {value!r} contains a control character")
    return value


def normalise_uri(uri: str) -> str:
    """An asset URI as Airflow stores it.

    A value without a scheme (`orders`) is kept as it is, and so is one whose
    scheme starts with `x-` (private schemes). Otherwise the scheme is
    lower-cased, a password in the URI is dropped with a warning (with the user
    name: secrets never belong in an asset's identity), query parameters are
    sorted, trailing slashes of the path and the fragment are removed. The
    `airflow` scheme is reserved and refused.
    """
    parts = urllib.parse.urlsplit(uri)
    if not parts.scheme and not parts.netloc:
        return uri
    scheme = parts.scheme.lower()
    if not scheme or scheme.startswith("x-"):
        return uri
    if scheme == "airflow":
        raise ValueError("Asset scheme 'airflow' is reserved")
    netloc = parts.netloc
    if parts.password:
        warnings.warn(
            "An Asset URI should not contain a password. User info has been automatically dropped.",
            UserWarning,
            stacklevel=4,
        )
        netloc = netloc.rpartition("@")[2]
    query = urllib.parse.urlencode(sorted(urllib.parse.parse_qsl(parts.query))) if parts.query else ""
    return urllib.parse.urlunsplit((scheme, netloc, parts.path.rstrip("/") or "/", query, ""))


class BaseAsset:
    """Something a schedule can wait on: an asset, an alias, a reference, or a condition over them."""

    def __and__(self, other: BaseAsset) -> AssetAll:
        if not isinstance(other, BaseAsset):
            return NotImplemented
        return AssetAll(self, other)

    def __or__(self, other: BaseAsset) -> AssetAny:
        if not isinstance(other, BaseAsset):
            return NotImplemented
        return AssetAny(self, other)

    def within(self, seconds: float | timedelta, key: str | None = None) -> AssetWindow:
        """This condition, holding only when its events of one `key` came within `seconds` of each other.

        `(a & b).within(60, key="order_id")`: see `herald.sdk.asset_windows.AssetWindow`.
        """
        from herald.sdk.asset_windows import AssetWindow

        return AssetWindow(self, seconds, key)

    def iter_assets(self) -> Iterable[Asset]:
        """Every asset the condition mentions, once each, in order."""
        return iter(())

    def iter_asset_aliases(self) -> Iterable[AssetAlias]:
        """Every asset alias the condition mentions, once each, in order."""
        return iter(())

    def iter_asset_refs(self) -> Iterable[AssetRef]:
        """Every reference (`Asset.ref(...)`) the condition mentions, in order."""
        return iter(())

    def evaluate(self, ready: set[str]) -> bool:
        """True when the condition holds given the names of assets (and aliases) with queued events."""
        raise NotImplementedError

    def describe(self) -> Any:
        """A JSON-serialisable form of the condition, for listings."""
        raise NotImplementedError


class Asset(BaseAsset):
    """A data entity whose updates (asset events) can schedule DAGs.

    `Asset("orders")`, `Asset(uri="s3://bucket/orders")` (named after the URI as
    written) and `Asset("orders", "s3://bucket/orders")` are all valid, as in
    Airflow. Two assets are the same when their names are: the name is the
    asset's identity in Herald's database.

    Args:
        name: unique name of the asset; defaults to the URI as given.
        uri: the URI of the data it stands for; defaults to the name. It is
            normalised as Airflow does (see `normalise_uri`).
        group: the asset's group (`"asset"`, or `"dataset"`, `"model"`...).
        extra: free JSON metadata kept with the asset (not with its events).
        watchers: watchers turning messages from a queue into events of this asset.
    """

    asset_type: ClassVar[str] = "asset"

    def __init__(
        self,
        name: str | None = None,
        uri: str | None = None,
        *,
        group: str | None = None,
        extra: dict[str, Any] | None = None,
        watchers: Sequence[AssetWatcher] | None = None,
    ) -> None:
        if name is None and uri is None:
            raise TypeError("Asset() requires either 'name' or 'uri'")
        if name is None:
            name = str(uri)
        elif uri is None:
            uri = name
        self.name: str = _identifier("Asset", "name", name)
        if self.name in _RESERVED_NAMES:
            raise ValueError(f"prohibited name for asset: {self.name}")
        self.uri: str = normalise_uri(_identifier("Asset", "uri", str(uri)))
        self.group: str = _identifier("Asset", "group", self.asset_type if group is None else group)
        if extra is not None and not isinstance(extra, dict):
            raise TypeError(f"Asset extra must be a dict, got {type(extra).__name__}")
        self.extra: dict[str, Any] = dict(extra or {})
        self.watchers: list[AssetWatcher] = list(watchers or [])
        for watcher in self.watchers:
            watcher.bind(self)

    @staticmethod
    def ref(*, name: str = "", uri: str = "") -> AssetRef:
        """A reference to an asset defined elsewhere, by its name or by its URI (not both)."""
        if name and uri:
            raise TypeError("Asset reference must be made to either name or URI, not both")
        if name:
            return AssetNameRef(name)
        if uri:
            return AssetUriRef(uri)
        raise TypeError("Asset reference expects keyword argument 'name' or 'uri'")

    def missing_for(self, seconds: float | timedelta, key: str | None = None) -> AssetAbsence:
        """A schedule that runs when a `key` that sent events of this asset has been silent `seconds`.

        `sensors.missing_for(300, key="device_id")`: see `herald.sdk.asset_windows.AssetAbsence`.
        """
        from herald.sdk.asset_windows import AssetAbsence

        return AssetAbsence(self, seconds, key)

    def __fspath__(self) -> str:
        return self.uri

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Asset):
            return self.name == other.name
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("asset", self.name))

    def __repr__(self) -> str:
        if self.uri == self.name:
            return f"Asset({self.name!r})"
        return f"Asset(name={self.name!r}, uri={self.uri!r})"

    def iter_assets(self) -> Iterable[Asset]:
        yield self

    def evaluate(self, ready: set[str]) -> bool:
        return self.name in ready

    def describe(self) -> Any:
        return self.name

    def to_wire(self) -> dict[str, Any]:
        """The asset as JSON: `name`, `uri`, `group`, `extra` (what a try request carries)."""
        return {"name": self.name, "uri": self.uri, "group": self.group, "extra": dict(self.extra)}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Asset:
        """The asset from `to_wire`'s form (a missing uri, group or extra takes its default)."""
        return cls(name=data["name"], uri=data.get("uri"), group=data.get("group"), extra=data.get("extra"))


class Dataset(Asset):
    """Airflow 2's name for an asset; its group is `dataset`."""

    asset_type: ClassVar[str] = "dataset"


class Model(Asset):
    """An asset standing for a machine-learning model; its group is `model`."""

    asset_type: ClassVar[str] = "model"


class AssetRef(BaseAsset):
    """A reference to an asset by name or by URI, resolved against the assets Herald knows.

    Made by `Asset.ref(name=...)` or `Asset.ref(uri=...)`, never directly.
    """

    def _key(self) -> tuple[str, str]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AssetRef):
            return self._key() == other._key()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def iter_asset_refs(self) -> Iterable[AssetRef]:
        yield self


class AssetNameRef(AssetRef):
    """A reference to the asset named `name`."""

    def __init__(self, name: str) -> None:
        self.name = _identifier("Asset reference", "name", name)

    def _key(self) -> tuple[str, str]:
        return ("name", self.name)

    def __repr__(self) -> str:
        return f"AssetNameRef(name={self.name!r})"

    def evaluate(self, ready: set[str]) -> bool:
        return self.name in ready

    def describe(self) -> Any:
        return {"asset_ref": {"name": self.name}}


class AssetUriRef(AssetRef):
    """A reference to the asset whose URI is `uri` (normalised as an asset's URI is)."""

    def __init__(self, uri: str) -> None:
        self.uri = normalise_uri(_identifier("Asset reference", "uri", uri))

    def _key(self) -> tuple[str, str]:
        return ("uri", self.uri)

    def __repr__(self) -> str:
        return f"AssetUriRef(uri={self.uri!r})"

    def evaluate(self, ready: set[str]) -> bool:
        # The scheduler adds `uri:URI` for each ready asset; the prefix keeps a URI apart
        # from an asset whose name happens to be that string.
        return f"uri:{self.uri}" in ready

    def describe(self) -> Any:
        return {"asset_ref": {"uri": self.uri}}


class AssetAlias(BaseAsset):
    """A name that tasks attach asset events to at run time (`outlet_events[alias].add(Asset(...))`).

    A DAG scheduled on an alias runs when an event is emitted through it, whichever
    asset the event is for.

    Args:
        name: unique name of the alias.
        group: its group, `"asset"` by default.
    """

    def __init__(self, name: str, group: str = "asset") -> None:
        self.name = _identifier("AssetAlias", "name", name)
        self.group = _identifier("AssetAlias", "group", group, empty_ok=True)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AssetAlias):
            return (self.name, self.group) == (other.name, other.group)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("alias", self.name))

    def __repr__(self) -> str:
        return f"AssetAlias(name={self.name!r}, group={self.group!r})"

    def iter_asset_aliases(self) -> Iterable[AssetAlias]:
        yield self

    def evaluate(self, ready: set[str]) -> bool:
        # Aliases are resolved by the scheduler; their key in the ready set is prefixed
        # so that an alias and an asset of the same name stay apart.
        return f"alias:{self.name}" in ready

    def describe(self) -> Any:
        return {"alias": {"name": self.name, "group": self.group}}

    def to_wire(self) -> dict[str, Any]:
        """The alias as JSON: `name`, `group`."""
        return {"name": self.name, "group": self.group}


class _AssetBoolean(BaseAsset):
    operator = ""

    def __init__(self, *objects: BaseAsset) -> None:
        for obj in objects:
            if not isinstance(obj, BaseAsset):
                raise TypeError(f"cannot combine {obj!r} with assets: it is not an Asset")
        self.objects: tuple[BaseAsset, ...] = objects

    def iter_assets(self) -> Iterable[Asset]:
        seen: set[str] = set()
        for obj in self.objects:
            for asset in obj.iter_assets():
                if asset.name not in seen:
                    seen.add(asset.name)
                    yield asset

    def iter_asset_aliases(self) -> Iterable[AssetAlias]:
        seen: set[str] = set()
        for obj in self.objects:
            for alias in obj.iter_asset_aliases():
                if alias.name not in seen:
                    seen.add(alias.name)
                    yield alias

    def iter_asset_refs(self) -> Iterable[AssetRef]:
        for obj in self.objects:
            yield from obj.iter_asset_refs()

    def describe(self) -> Any:
        return {self.operator: [obj.describe() for obj in self.objects]}

    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):
            assert isinstance(other, _AssetBoolean)
            return self.objects == other.objects
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.operator, self.objects))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.objects))})"


class AssetAll(_AssetBoolean):
    """Holds when every part has new events (`a & b`, or a list of assets)."""

    operator = "all"

    def __and__(self, other: BaseAsset) -> AssetAll:
        if not isinstance(other, BaseAsset):
            return NotImplemented
        # (a & b) & c is a & b & c: one flat condition, as Airflow builds it
        return AssetAll(*self.objects, other)

    def evaluate(self, ready: set[str]) -> bool:
        return all(obj.evaluate(ready) for obj in self.objects)


class AssetAny(_AssetBoolean):
    """Holds when any part has new events (`a | b`)."""

    operator = "any"

    def __or__(self, other: BaseAsset) -> AssetAny:
        if not isinstance(other, BaseAsset):
            return NotImplemented
        return AssetAny(*self.objects, other)

    def evaluate(self, ready: set[str]) -> bool:
        return any(obj.evaluate(ready) for obj in self.objects)


class Metadata:
    """What a task yields to set the `extra` of one of its outlet events.

    `yield Metadata(orders, extra={"rows": 10})` inside a task with
    `outlets=[orders]`; with `alias=AssetAlias("a")` the event is attached to the
    alias as well (as `outlet_events[alias].add(orders, extra=...)` does).

    Args:
        asset: the asset whose event gets the extra.
        extra: JSON metadata of the event.
        alias: an alias the event is emitted through.
    """

    def __init__(self, asset: Asset, extra: dict[str, Any] | None = None, alias: AssetAlias | None = None) -> None:
        if not isinstance(asset, Asset):
            raise TypeError(f"Metadata needs an Asset, got {type(asset).__name__}")
        if extra is not None and not isinstance(extra, dict):
            raise TypeError(f"Metadata extra must be a dict, got {type(extra).__name__}")
        if alias is not None and not isinstance(alias, AssetAlias):
            raise TypeError(f"Metadata alias must be an AssetAlias, got {type(alias).__name__}")
        self.asset = asset
        self.extra: dict[str, Any] = dict(extra or {})
        self.alias = alias

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Metadata):
            return (self.asset, self.extra, self.alias) == (other.asset, other.extra, other.alias)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Metadata({self.asset!r}, extra={self.extra!r}, alias={self.alias!r})"
