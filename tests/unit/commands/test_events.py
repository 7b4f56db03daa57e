"""commands/events.py: emitting an event (with an idempotency key) and replaying one."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from herald.commands import events
from herald.commands.errors import Conflict, Invalid, NotFound
from herald.store import tables as t
from herald.store.states import RunType
from tests.unit.commands.conftest import Db


def test_emit_records_an_event_and_queues_it_for_the_dags_scheduled_on_its_asset(db: Db) -> None:
    event_id, created = events.emit(db.engine, "orders", {"n": 1})
    assert created
    event = db.one(select(t.asset_event).where(t.asset_event.c.id == event_id))
    assert (event.source, event.extra) == (events.CLI_SOURCE, {"n": 1})
    queued = db.all(select(t.event_queue.c.dag_id).where(t.event_queue.c.event_id == event_id))
    assert [q.dag_id for q in queued] == ["process_orders"]


def test_the_same_idempotency_key_makes_one_event(db: Db) -> None:
    first = events.emit(db.engine, "orders", {"n": 1}, source=events.API_SOURCE, idempotency_key="k1")
    again = events.emit(db.engine, "orders", {"n": 1}, source=events.API_SOURCE, idempotency_key="k1")
    assert first == (first[0], True) and again == (first[0], False)
    with pytest.raises(Conflict, match="another body"):  # a different event under a used key is not a retry
        events.emit(db.engine, "orders", {"n": 2}, source=events.API_SOURCE, idempotency_key="k1")
    assert len(db.all(select(t.asset_event))) == 1


def test_a_key_used_for_another_asset_is_a_conflict(db: Db) -> None:
    events.emit(db.engine, "orders", source=events.API_SOURCE, idempotency_key="k2")
    with pytest.raises(Conflict, match="another asset"):
        events.emit(db.engine, "audits", source=events.API_SOURCE, idempotency_key="k2")


def test_emit_refuses_an_unknown_asset_and_an_extra_that_is_not_an_object(db: Db) -> None:
    with pytest.raises(NotFound) as caught:
        events.emit(db.engine, "ghost")
    assert caught.value.hint is not None and "audits, orders" in caught.value.hint
    with pytest.raises(Invalid):
        events.emit(db.engine, "orders", "text")
    assert db.all(select(t.asset_event)) == []


def test_replay_makes_one_run_per_consumer_that_consumes_the_event(db: Db) -> None:
    event_id, _ = events.emit(db.engine, "orders")
    run_ids = events.replay(db.engine, event_id)
    assert len(run_ids) == 1
    run = db.one(select(t.dag_run).where(t.dag_run.c.run_id == run_ids[0]))
    assert (run.dag_id, run.run_type) == ("process_orders", RunType.REPLAY)
    linked = db.all(select(t.dag_run_event.c.event_id).where(t.dag_run_event.c.run_pk == run.id))
    assert [r.event_id for r in linked] == [event_id]


def test_replay_into_named_dags(db: Db) -> None:
    event_id, _ = events.emit(db.engine, "audits")
    run_ids = events.replay(db.engine, event_id, ["manual", "manual"])
    assert len(run_ids) == 1


def test_replay_refuses_what_cannot_be_replayed(db: Db) -> None:
    with pytest.raises(NotFound, match="no event 999"):
        events.replay(db.engine, 999)
    event_id, _ = events.emit(db.engine, "audits")  # no DAG is scheduled on audits
    with pytest.raises(Conflict) as caught:
        events.replay(db.engine, event_id)
    assert caught.value.hint is not None and "dag_ids" in caught.value.hint
    with pytest.raises(NotFound, match="no DAG 'nope'"):
        events.replay(db.engine, event_id, ["manual", "nope"])
    assert db.all(select(t.dag_run)) == []  # the run for `manual` was rolled back with the rest
