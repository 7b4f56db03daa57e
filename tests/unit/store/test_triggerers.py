"""`store.triggerers`: heartbeats, who is alive, who holds each lease (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from herald.store import tables as t
from herald.store import triggerers, watchers
from herald.store.triggerers import Identity
from herald.store.types import utcnow
from tests.unit.commands.conftest import Db


def me(name: str) -> Identity:
    return Identity(name, "host", 1, utcnow())


def test_a_beat_sees_the_live_triggerers_and_who_holds_each_lease(db: Db) -> None:
    wid = db.watcher_id()
    view = triggerers.beat(db.engine, me("b"), [], 0, [wid], 30)
    assert view.live == ["b"] and view.holders == {wid: None}
    watchers.claim_leases(db.engine, "a", {"k": [wid]}, 30)
    view = triggerers.beat(db.engine, me("a"), [wid], 7, [wid], 30)
    assert view.live == ["a", "b"] and view.holders == {wid: "a"}
    assert db.one(select(t.triggerer.c.consuming, t.triggerer.c.received).where(t.triggerer.c.name == "a")) == (
        [wid],
        7,
    )


def test_a_silent_triggerer_counts_dead_after_the_ttl_and_its_expired_lease_as_free(db: Db) -> None:
    wid = db.watcher_id()
    triggerers.beat(db.engine, me("dead"), [wid], 0, [wid], 30)
    watchers.claim_leases(db.engine, "dead", {"k": [wid]}, -1)  # its lease expired
    long_ago = utcnow() - timedelta(seconds=60)
    with db.engine.begin() as conn:
        conn.execute(update(t.triggerer).where(t.triggerer.c.name == "dead").values(heartbeat_at=long_ago))
    view = triggerers.beat(db.engine, me("alive"), [], 0, [wid], 30)
    assert view.live == ["alive"] and view.holders == {wid: None}


def test_a_stopped_triggerer_is_forgotten_at_once_and_a_long_dead_one_deleted(db: Db) -> None:
    triggerers.beat(db.engine, me("a"), [], 0, [], 30)
    triggerers.beat(db.engine, me("old"), [], 0, [], 30)
    with db.engine.begin() as conn:
        conn.execute(
            update(t.triggerer)
            .where(t.triggerer.c.name == "old")
            .values(heartbeat_at=utcnow() - triggerers.FORGET_AFTER - timedelta(seconds=1))
        )
    triggerers.forget(db.engine, "a")
    triggerers.beat(db.engine, me("b"), [], 0, [], 30)
    with db.engine.connect() as conn:
        assert list(conn.execute(select(t.triggerer.c.name)).scalars()) == ["b"]
