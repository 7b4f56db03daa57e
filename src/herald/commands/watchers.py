"""Pausing and resuming a watcher.

A paused watcher is consumed by no triggerer: its messages wait in the broker
(where they are safe) until it is resumed. The watchers that read through the
same connection (the same consumer key: one queue, one set of options) pause
with it, since one connection reads for all of them; `Paused.sharing` names
them so that the face can say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine

from herald import notify
from herald.commands.errors import Conflict, NotFound
from herald.store import watchers

LIST_HINT = "list watchers with: herald watchers list (GET /api/v1/watchers)"


@dataclass(frozen=True)
class Paused:
    """What a pause or a resume did: the watcher, its new state, and the watchers sharing its connection."""

    watcher_id: int
    asset: str
    name: str
    state: str
    sharing: list[dict[str, Any]] = field(default_factory=list)


def require_watcher(conn: Connection, watcher_id: int) -> dict[str, Any]:
    """The active watcher `watcher_id` (`{id, asset, name, state, key}`); raises `NotFound` when there is none."""
    found = watchers.find(conn, watcher_id)
    if found is None:
        raise NotFound(f"no watcher {watcher_id}", LIST_HINT)
    return found


def set_paused(engine: Engine, watcher_id: int, paused: bool) -> Paused:
    """Pause a watcher (`paused=True`) or resume it; the triggerers hear of it with the commit.

    Raises:
        NotFound: no active watcher `watcher_id`.
        Conflict: it is paused already (pausing) or not paused (resuming).
    """
    with engine.begin() as conn:
        found = require_watcher(conn, watcher_id)
        if not watchers.set_paused(conn, watcher_id, paused):
            verb = "paused already" if paused else f"not paused (it is {found['state']})"
            raise Conflict(f"watcher {watcher_id} ({found['asset']}/{found['name']}) is {verb}")
        notify.notify_in(conn, notify.WATCHERS)
        after = watchers.find(conn, watcher_id)
        assert after is not None
        return Paused(
            watcher_id, found["asset"], found["name"], after["state"], watchers.sharing(conn, watcher_id, found["key"])
        )
