"""`store.watcher_samples`: a watcher's health over time, sampled by its lease holder (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from herald.store import retention, watcher_samples
from herald.store import tables as t
from herald.store.states import WatcherState
from herald.store.types import utcnow
from tests.unit.commands.conftest import Db

w = t.watcher


def set_watcher(db: Db, **values: object) -> None:
    watcher_id = db.watcher_id()
    with db.engine.begin() as conn:
        conn.execute(update(w).where(w.c.id == watcher_id).values(**values))


def samples(db: Db, minutes: int = 60) -> list[dict[str, object]]:
    watcher_id = db.watcher_id()
    with db.engine.connect() as conn:
        now = utcnow()
        return watcher_samples.history(conn, watcher_id, now - timedelta(minutes=minutes), now + timedelta(hours=1))


def test_the_lease_holder_samples_state_lag_received_and_an_error_only_while_troubled(db: Db) -> None:
    now = utcnow()
    # Not holding the lease: nothing sampled (another triggerer samples it).
    set_watcher(db, lease_owner="other", state=WatcherState.RUNNING, lag=3, received=10)
    assert watcher_samples.take(db.engine, "me", now) == 0
    set_watcher(db, lease_owner="me")
    assert watcher_samples.take(db.engine, "me", now) == 1
    set_watcher(db, state=WatcherState.RECONNECTING, last_error="ConnectionError: refused", lag=None)
    assert watcher_samples.take(db.engine, "me", now + timedelta(seconds=15)) == 1
    assert watcher_samples.take(db.engine, "me", now + timedelta(seconds=30)) == 1
    # Running again, its last error still set until a message comes: no longer an error.
    set_watcher(db, state=WatcherState.RUNNING, lag=0, received=12)
    assert watcher_samples.take(db.engine, "me", now + timedelta(seconds=45)) == 1
    found = samples(db)
    assert [(s["state"], s["lag"], s["received"], s["error"]) for s in found] == [
        ("running", 3, 10, None),
        ("reconnecting", None, 10, "ConnectionError: refused"),
        ("reconnecting", None, 10, "ConnectionError: refused"),
        ("running", 0, 12, None),
    ]
    (spell,) = watcher_samples.error_spells(found)
    assert spell["error"] == "ConnectionError: refused" and spell["samples"] == 2
    assert spell["first_seen"] == now + timedelta(seconds=15) and spell["last_seen"] == now + timedelta(seconds=30)


def test_error_spells_are_split_by_a_good_sample_or_another_error_newest_first() -> None:
    at = utcnow()
    errors = ["a", "a", None, "a", "b"]
    found = watcher_samples.error_spells(
        [{"at": at + timedelta(seconds=i), "state": "reconnecting", "error": e} for i, e in enumerate(errors)]
    )
    assert [(s["error"], s["samples"]) for s in found] == [("b", 1), ("a", 1), ("a", 2)]


def test_old_samples_are_pruned_by_the_triggerer_and_by_retention(db: Db) -> None:
    now = utcnow()
    set_watcher(db, lease_owner="me")
    for age in (timedelta(days=3), timedelta(days=2), timedelta(hours=1)):
        watcher_samples.take(db.engine, "me", now - age)
    assert watcher_samples.prune(db.engine, now - timedelta(days=2, hours=12)) == 1
    with db.engine.connect() as conn:
        assert retention.count(conn, now - timedelta(days=1)).watcher_samples == 1
    assert retention.clean(db.engine, now - timedelta(days=1), pause=0).watcher_samples == 1
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.watcher_sample)).scalar_one() == 1
