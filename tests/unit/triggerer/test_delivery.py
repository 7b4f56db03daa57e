"""The delivery's one transaction (`store.events.record_batch`) and the replay of dead letters."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from herald.config import normalise_database_url
from herald.sdk.triggers import Message
from herald.store import events, watchers
from herald.store import tables as t
from herald.store.db import make_engine
from herald.store.events import Outcome
from herald.store.migrate import upgrade
from herald.store.states import WatcherState
from herald.store.types import utcnow


@pytest.fixture
def engine(database_url: str) -> Any:
    """The metadata database, on SQLite and on PostgreSQL."""
    engine = make_engine(normalise_database_url(database_url))
    upgrade(engine)
    yield engine
    engine.dispose()


def _watcher(engine: Engine) -> tuple[int, int]:
    now = utcnow()
    with engine.begin() as conn:
        asset_id = conn.execute(
            insert(t.asset).values(name="orders", uri="orders", created_at=now)
        ).inserted_primary_key
        aid = int(asset_id[0]) if asset_id else 0
        wid = conn.execute(
            insert(t.watcher).values(
                asset_id=aid, name="w", trigger={}, consumer_key="k", updated_at=now, state=WatcherState.STOPPED
            )
        ).inserted_primary_key
    return aid, int(wid[0]) if wid else 0


def _message(key: str, body: bytes = b"{}") -> Message:
    return Message(body=body, dedupe_key=key, headers={"h": "v"}, metadata={"broker": "test"})


def test_a_batch_stores_events_dead_letters_and_counters_once(engine: Engine) -> None:
    aid, wid = _watcher(engine)
    batch = [
        Outcome(wid, aid, _message("1"), "event", {"n": 1}),
        Outcome(wid, aid, _message("1"), "event", {"n": 1}),  # the broker delivered it twice
        Outcome(wid, aid, _message("2"), "skip"),
        Outcome(wid, aid, _message("3", b"{bad"), "dead", error="ValueError: bad"),
    ]
    with engine.begin() as conn:
        result = events.record_batch(conn, batch, {aid: ["on_orders"]}, {wid: "test://q"})
    with engine.begin() as conn:  # the whole batch again, as after a crash before the ack
        again = events.record_batch(conn, batch, {aid: ["on_orders"]}, {wid: "test://q"})
    assert (result.events, result.deduped, result.skipped, result.dead) == (1, 1, 1, 1)
    assert (again.events, again.deduped) == (0, 2)
    with engine.connect() as conn:
        stored = conn.execute(select(t.asset_event.c.source, t.asset_event.c.extra)).all()
        queued = conn.execute(select(t.event_queue.c.dag_id)).scalars().all()
        dead = conn.execute(select(t.dead_letter.c.error, t.dead_letter.c.source)).all()
        w = conn.execute(select(t.watcher).where(t.watcher.c.id == wid)).one()
    assert [(s, e["payload"], e["message"]["headers"]) for s, e in stored] == [(f"watcher:{wid}", {"n": 1}, {"h": "v"})]
    assert queued == ["on_orders"]
    assert dead == [("ValueError: bad", "test://q")]  # a redelivered poison message is one dead letter
    assert (w.received, w.events, w.deduped, w.skipped, w.dead_lettered) == (8, 1, 3, 2, 2)


def test_watcher_state_and_leases(engine: Engine) -> None:
    _aid, wid = _watcher(engine)
    watchers.set_state(engine, [wid], WatcherState.RECONNECTING, "ConnectionError: gone")
    assert watchers.claim_leases(engine, "a", {"k": [wid]}, 30) == {"k"}
    assert watchers.claim_leases(engine, "b", {"k": [wid]}, 30) == set()  # held by a
    watchers.release_leases(engine, "a", [wid])
    assert watchers.claim_leases(engine, "b", {"k": [wid]}, 30) == {"k"}
    with engine.connect() as conn:
        row = conn.execute(select(t.watcher).where(t.watcher.c.id == wid)).one()
    assert (row.state, row.last_error, row.lease_owner) == ("reconnecting", "ConnectionError: gone", "b")


def test_replayed_dead_letter_is_built_like_a_delivered_event(engine: Engine) -> None:
    aid, wid = _watcher(engine)
    with engine.begin() as conn:
        events.record_batch(conn, [Outcome(wid, aid, _message("9", b"{bad"), "dead", error="x")], {}, {})
        conn.execute(t.dead_letter.update().values(replay_requested_at=utcnow()))
    [letter] = events.requested_replays(engine, [wid])
    assert letter.message.metadata["replayed_from_dead_letter"] == letter.id
    event = events.watcher_event(wid, aid, letter.message, {"fixed": True}, None, utcnow())
    with engine.begin() as conn:
        assert events.replay_dead_letter(conn, letter.id, event, None, {aid: ["d"]}) == 1
    assert events.requested_replays(engine, [wid]) == []
    with engine.connect() as conn:
        source, extra = conn.execute(select(t.asset_event.c.source, t.asset_event.c.extra)).one()
    assert source == f"watcher:{wid}" and extra["payload"] == {"fixed": True}
    assert extra["message"]["dedupe_key"] == "9"
