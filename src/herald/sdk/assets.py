"""Assets and the conditions that combine them into a schedule."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from herald.sdk.watcher import AssetWatcher

_NAME = re.compile(r"^[A-Za-z0-9_.:/\-]{1,200}$")


class BaseAsset:
    """Something a schedule can wait on: an asset, or a condition over assets."""

    def __and__(self, other: BaseAsset) -> AssetAll:
        return AssetAll(self, other)

    def __or__(self, other: BaseAsset) -> AssetAny:
        return AssetAny(self, other)

    def iter_assets(self) -> Iterable[Asset]:
        """Every asset the condition mentions, once each, in order."""
        raise NotImplementedError

    def evaluate(self, ready: set[str]) -> bool:
        """True when the condition holds given the names of assets with queued events."""
        raise NotImplementedError

    def describe(self) -> Any:
        """A JSON-serialisable form of the condition, for listings."""
        raise NotImplementedError


@dataclass(eq=False, repr=False)
class Asset(BaseAsset):
    """A named data entity whose updates (asset events) can schedule DAGs.

    Args:
        name: unique name of the asset.
        uri: optional URI of the data it stands for; defaults to the name.
        watchers: watchers turning messages from a queue into events of this asset.
        extra: free metadata kept with the asset.
    """

    name: str
    uri: str | None = None
    watchers: Sequence[AssetWatcher] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"invalid asset name {self.name!r}: use 1-200 letters, digits or _ . : / -")
        if self.uri is None:
            self.uri = self.name
        self.watchers = list(self.watchers)
        for watcher in self.watchers:
            watcher.bind(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Asset):
            return self.name == other.name
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("asset", self.name))

    def __repr__(self) -> str:
        return f"Asset({self.name!r})"

    def iter_assets(self) -> Iterable[Asset]:
        yield self

    def evaluate(self, ready: set[str]) -> bool:
        return self.name in ready

    def describe(self) -> Any:
        return self.name


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

    def describe(self) -> Any:
        return {self.operator: [obj.describe() for obj in self.objects]}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.objects))})"


class AssetAll(_AssetBoolean):
    """Holds when every part has new events (`a & b`, or a list of assets)."""

    operator = "all"

    def evaluate(self, ready: set[str]) -> bool:
        return all(obj.evaluate(ready) for obj in self.objects)


class AssetAny(_AssetBoolean):
    """Holds when any part has new events (`a | b`)."""

    operator = "any"

    def evaluate(self, ready: set[str]) -> bool:
        return any(obj.evaluate(ready) for obj in self.objects)
