"""commands/watchers.py: pausing and resuming a watcher, and what the triggerer's writes may not undo."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from herald.commands import watchers as watcher_commands
from herald.commands.errors import Conflict, NotFound
from herald.store import tables as t
from herald.store import watchers
from herald.store.states import WatcherState
from herald.store.types import utcnow
from tests.unit.commands.conftest import Db


def _row(db: Db, watcher_id: int) -> tuple[str, str | None]:
    w = t.watcher
    row = db.one(select(w.c.state, w.c.lease_owner).where(w.c.id == watcher_id))
    return row.state, row.lease_owner


def test_pause_gives_the_lease_up_and_no_triggerer_takes_it_until_resumed(db: Db) -> None:
    wid = db.watcher_id()
    key = db.one(select(t.watcher.c.consumer_key).where(t.watcher.c.id == wid))[0]
    assert watchers.claim_leases(db.engine, "triggerer-a", {key: [wid]}, 30) == {key}

    done = watcher_commands.set_paused(db.engine, wid, True)

    assert (done.watcher_id, done.asset, done.name, done.state) == (wid, "orders", "orders_local", "paused")
    assert _row(db, wid) == (WatcherState.PAUSED, None)
    assert watchers.paused(db.engine, [wid]) == {wid}
    assert watchers.claim_leases(db.engine, "triggerer-b", {key: [wid]}, 30) == set()
    # what a stopping consumer reports does not hide the pause
    watchers.set_state(db.engine, [wid], WatcherState.STOPPED)
    watchers.set_state(db.engine, [wid], WatcherState.RECONNECTING, "ConnectionError: gone")
    assert _row(db, wid) == (WatcherState.PAUSED, None)

    resumed = watcher_commands.set_paused(db.engine, wid, False)

    assert resumed.state == WatcherState.STARTING
    assert watchers.paused(db.engine, [wid]) == set()
    assert watchers.claim_leases(db.engine, "triggerer-b", {key: [wid]}, 30) == {key}


def test_pausing_twice_resuming_a_running_one_or_an_unknown_watcher_is_refused(db: Db) -> None:
    wid = db.watcher_id()
    with pytest.raises(NotFound, match="no watcher 999"):
        watcher_commands.set_paused(db.engine, 999, True)
    with pytest.raises(Conflict, match=r"is not paused \(it is starting\)"):
        watcher_commands.set_paused(db.engine, wid, False)
    watcher_commands.set_paused(db.engine, wid, True)
    with pytest.raises(Conflict, match=r"watcher \d+ \(orders/orders_local\) is paused already"):
        watcher_commands.set_paused(db.engine, wid, True)


def test_the_watchers_sharing_its_connection_are_named(db: Db) -> None:
    wid = db.watcher_id()
    key = db.one(select(t.watcher.c.consumer_key).where(t.watcher.c.id == wid))[0]
    asset = db.one(select(t.asset.c.id).where(t.asset.c.name == "audits"))[0]
    with db.engine.begin() as conn:
        other = conn.execute(
            t.watcher.insert()
            .values(asset_id=asset, name="audits_local", trigger={}, consumer_key=key, updated_at=utcnow())
            .returning(t.watcher.c.id)
        ).scalar_one()
        # a watcher gone from the DAG files (inactive) reads through nothing
        gone = conn.execute(
            t.watcher.insert()
            .values(asset_id=asset, name="gone", trigger={}, consumer_key=key, updated_at=utcnow())
            .returning(t.watcher.c.id)
        ).scalar_one()
        conn.execute(update(t.watcher).where(t.watcher.c.id == gone).values(is_active=False))
    done = watcher_commands.set_paused(db.engine, wid, True)
    assert done.sharing == [{"id": other, "asset": "audits", "name": "audits_local"}]
