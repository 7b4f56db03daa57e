"""`store.watchers`: what the triggerer writes on a watcher row (SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import select

from herald.store import tables as t
from herald.store import watchers
from herald.store.states import WatcherState
from herald.store.types import utcnow
from tests.unit.commands.conftest import Db

w = t.watcher


def test_a_synced_watcher_starts_and_counts_add_up_batch_after_batch(db: Db) -> None:
    wid = db.watcher_id()
    assert db.one(select(w.c.state, w.c.received, w.c.is_active).where(w.c.id == wid)) == (
        WatcherState.STARTING,
        0,
        True,
    )
    with db.engine.begin() as conn:
        watchers.add_counts(conn, {wid: watchers.WatcherCounts(received=3, events=2, skipped=1)}, utcnow())
    with db.engine.begin() as conn:
        watchers.add_counts(conn, {wid: watchers.WatcherCounts(received=2, deduped=1, dead_lettered=1)}, utcnow())
    watchers.set_lags(db.engine, {wid: 42})
    row = db.one(select(w).where(w.c.id == wid))
    assert (row.received, row.events, row.deduped, row.skipped, row.dead_lettered, row.lag) == (5, 2, 1, 1, 1, 42)
    assert row.last_message_at is not None


def test_an_expired_lease_moves_to_another_triggerer_and_errors_are_kept_with_the_state(db: Db) -> None:
    wid = db.watcher_id()
    assert watchers.claim_leases(db.engine, "a", {"k": [wid]}, -1) == {"k"}  # already expired
    assert watchers.claim_leases(db.engine, "b", {"k": [wid]}, 30) == {"k"}
    assert watchers.claim_leases(db.engine, "a", {"k": [wid]}, 30) == set()
    watchers.set_state(db.engine, [wid], WatcherState.RECONNECTING, "ConnectionError: refused")
    watchers.set_state(db.engine, [wid], WatcherState.RUNNING)  # back: the last error stays to be read
    assert db.one(select(w.c.state, w.c.last_error, w.c.lease_owner).where(w.c.id == wid)) == (
        WatcherState.RUNNING,
        "ConnectionError: refused",
        "b",
    )


def test_an_error_is_stored_masked_and_cleared_once_the_watcher_consumes_again(db: Db) -> None:
    wid = db.watcher_id()
    watchers.set_state(
        db.engine, [wid], WatcherState.RECONNECTING, "ConnectionError: redis://u:pw7@h:1/0?password=pw8 refused"
    )
    error = db.one(select(w.c.last_error).where(w.c.id == wid))[0]
    assert "pw7" not in error and "pw8" not in error and "redis://u:***@h:1/0?password=***" in error
    watchers.set_state(db.engine, [wid], WatcherState.RUNNING)
    with db.engine.begin() as conn:
        watchers.add_counts(conn, {wid: watchers.WatcherCounts(received=1, events=1)}, utcnow())
    assert db.one(select(w.c.state, w.c.last_error).where(w.c.id == wid)) == (WatcherState.RUNNING, None)
