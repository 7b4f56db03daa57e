"""Sizes in the store, on SQLite and PostgreSQL: dead letters keep the head of their body, listings show previews."""

from __future__ import annotations

import uuid

import pytest
from alembic import command
from sqlalchemy import insert, inspect, select, update

from herald.commands import dead_letters as dead_letter_commands
from herald.commands.errors import Conflict
from herald.sdk.triggers import Message
from herald.store import queries
from herald.store import tables as t
from herald.store.events import Outcome, insert_events, record_batch
from herald.store.migrate import alembic_config
from herald.store.states import RunState, TryState
from herald.store.storable import PREVIEW_CHARS
from herald.store.types import utcnow
from tests.unit.commands.conftest import Db


def _dead(db: Db, body: bytes, max_body: int) -> int:
    watcher = db.watcher_id()
    asset = int(db.one(select(t.watcher.c.asset_id))[0])
    message = Message(body=body, dedupe_key=uuid.uuid4().hex)
    outcome = Outcome(watcher, asset, message, "dead", error="too large")
    with db.engine.begin() as conn:
        record_batch(conn, [outcome], {}, {watcher: "local://x"}, max_body)
    return int(db.one(select(t.dead_letter.c.id).where(t.dead_letter.c.dedupe_key == message.dedupe_key))[0])


def test_a_dead_letter_keeps_the_head_of_its_body_and_cannot_be_replayed(db: Db) -> None:
    body = "é".encode() * 5000  # 10 000 bytes; a cut may fall inside a character
    letter = _dead(db, body, 3001)

    with db.engine.connect() as conn:
        whole = queries.get_dead_letter(conn, letter)
        listed = next(d for d in queries.list_dead_letters(conn, 100) if d["id"] == letter)
    assert whole is not None
    assert whole["body_size"] == 10_000 and whole["body_truncated"] is True and whole["body_preview"] is False
    assert whole["body"] == "é" * 1500 and whole["body_encoding"] is None  # the dangling half is dropped
    assert listed["body_truncated"] and listed["body_preview"] and listed["body_size"] == 10_000
    assert listed["body"] == "é" * (PREVIEW_CHARS // 2)
    stored = db.one(select(t.dead_letter.c.body).where(t.dead_letter.c.id == letter))[0]
    assert len(bytes(stored)) == 3001
    with pytest.raises(Conflict, match="HERALD_MAX_DEAD_LETTER_BODY_BYTES"):
        dead_letter_commands.request_replay(db.engine, letter)
    # replaying every dead letter of the watcher leaves it out
    small = _dead(db, b"small", 3001)
    assert dead_letter_commands.request_replay_of_watcher(db.engine, db.watcher_id()) == 1
    with db.engine.connect() as conn:
        assert queries.get_dead_letter(conn, small)["replay_requested_at"] is not None  # type: ignore[index]
        assert queries.get_dead_letter(conn, letter)["replay_requested_at"] is None  # type: ignore[index]


def test_a_body_within_the_cap_is_whole(db: Db) -> None:
    letter = _dead(db, b"\xff\x00binary", 3001)
    with db.engine.connect() as conn:
        whole = queries.get_dead_letter(conn, letter)
    assert whole is not None
    assert whole["body_encoding"] == "base64" and whole["body_size"] == 8 and not whole["body_truncated"]


def test_event_listings_show_a_large_extra_as_a_preview(db: Db) -> None:
    asset = int(db.one(select(t.asset.c.id).where(t.asset.c.name == "orders"))[0])
    large = {"payload": {"text": "ü" * 3000}}
    now = utcnow()
    with db.engine.begin() as conn:
        made = insert_events(
            conn,
            [
                {"asset_id": asset, "source": "api", "dedupe_key": "big", "extra": large, "timestamp": now},
                {"asset_id": asset, "source": "api", "dedupe_key": "tiny", "extra": {"payload": 1}, "timestamp": now},
            ],
            {},
            now,
        )
    big_id, tiny_id = (m[0] for m in made)
    with db.engine.connect() as conn:
        listed = {e["id"]: e for e in queries.list_events(conn, 100)}
        summaries = {e["id"]: e for e in queries.events_by_id(conn, [big_id, tiny_id], summary=True)}
        whole = queries.get_event(conn, big_id)
    for shown in (listed[big_id], summaries[big_id]):
        assert shown["extra"] == {} and shown["extra_size"] > 6000  # "ü" is two bytes
        assert shown["extra_preview"].startswith('{"payload"') and len(shown["extra_preview"]) == PREVIEW_CHARS
    for shown in (listed[tiny_id], summaries[tiny_id]):
        assert shown["extra"] == {"payload": 1} and shown["extra_preview"] is None
    assert whole is not None and whole["extra"] == large


def test_a_run_lists_a_large_result_as_a_preview_and_the_task_log_has_it_whole(db: Db) -> None:
    run_id = db.add_run(RunState.SUCCESS, {"extract": TryState.SUCCESS, "load": TryState.SUCCESS})
    large = ["r" * 100] * 50
    with db.engine.begin() as conn:
        conn.execute(update(t.task_instance).where(t.task_instance.c.task_id == "extract").values(result=large))
        conn.execute(update(t.task_instance).where(t.task_instance.c.task_id == "load").values(result={"n": 1}))
    with db.engine.connect() as conn:
        run = queries.get_run(conn, run_id)
        log = queries.task_log(conn, run_id, "extract")
    assert run is not None and log is not None
    tasks = {x["task_id"]: x for x in run["tasks"]}
    assert tasks["extract"]["result"] is None and tasks["extract"]["result_preview"].startswith('["rrr')
    assert tasks["extract"]["result_size"] > 5000
    assert tasks["load"]["result"] == {"n": 1} and tasks["load"]["result_preview"] is None
    assert log["result"] == large


def test_migration_0011_adds_the_body_columns_and_downgrades(db: Db) -> None:
    engine = db.engine
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0010")
    assert "body_size" not in {c["name"] for c in inspect(engine).get_columns("dead_letter")}
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    with engine.begin() as conn:
        # a row written by an older Herald: whole, not truncated
        conn.execute(
            insert(t.dead_letter).values(
                source="x", body=b"old", headers={}, message={}, error="e", created_at=utcnow(), body_truncated=False
            )
        )
    with engine.connect() as conn:
        old = queries.list_dead_letters(conn, 1)[0]
    assert old["body"] == "old" and old["body_size"] == 3 and old["body_truncated"] is False
