"""AssetWatcher: binds one trigger to one asset."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from herald.sdk.triggers import BaseEventTrigger

if TYPE_CHECKING:
    from herald.sdk.assets import Asset

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")


class AssetWatcher:
    """Turns every accepted message of a trigger into one event of its asset.

    Args:
        name: the watcher's name, unique within its asset.
        trigger: the message source, for example `MessageQueueTrigger("local://orders")`.
    """

    def __init__(self, name: str, trigger: BaseEventTrigger) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"invalid watcher name {name!r}: use letters, digits, _ . -")
        if not isinstance(trigger, BaseEventTrigger):
            raise TypeError(
                f"watcher {name!r}: trigger must be a BaseEventTrigger such as "
                f"MessageQueueTrigger(url), got {type(trigger).__name__}"
            )
        self.name = name
        self.trigger = trigger
        self.asset: Asset | None = None

    def bind(self, asset: Asset) -> None:
        """Attach the watcher to the asset that lists it."""
        if self.asset is not None and self.asset.name != asset.name:
            raise ValueError(
                f"watcher {self.name!r} already watches asset {self.asset.name!r}; create one AssetWatcher per asset"
            )
        self.asset = asset

    def __repr__(self) -> str:
        return f"AssetWatcher({self.name!r}, {self.trigger!r})"
