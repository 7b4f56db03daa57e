"""Stream checkpoints: written in the caller's transaction, read back for a consumer, migration 0010."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, insert, inspect

from herald.sdk.triggers import Message
from herald.store import checkpoints
from herald.store import tables as t
from herald.store.migrate import alembic_config
from herald.store.states import WatcherState
from herald.store.types import utcnow


def _watchers(engine: Engine, count: int) -> list[int]:
    now = utcnow()
    with engine.begin() as conn:
        aid = conn.execute(insert(t.asset).values(name="s", uri="s", created_at=now)).inserted_primary_key
        ids = []
        for n in range(count):
            row = conn.execute(
                insert(t.watcher).values(
                    asset_id=aid[0] if aid else 0,
                    name=f"w{n}",
                    trigger={},
                    consumer_key="k",
                    updated_at=now,
                    state=WatcherState.STOPPED,
                )
            ).inserted_primary_key
            ids.append(int(row[0]) if row else 0)
    return ids


def _message(shard: str, sequence: str) -> Message:
    return Message(body=b"{}", dedupe_key=f"s/{shard}/{sequence}", checkpoint=(shard, sequence))


def test_a_batch_saves_the_last_position_of_each_shard_and_a_later_one_moves_it(engine: Engine) -> None:
    (wid,) = _watchers(engine, 1)
    spec: Any = SimpleNamespace(id=wid)
    batch = [_message("a", "1"), _message("b", "7"), _message("a", "2"), Message(body=b"", dedupe_key="x")]
    with engine.begin() as conn:
        checkpoints.save_batch(conn, [spec.id], (m.checkpoint for m in batch))
    assert checkpoints.load(engine, [wid]) == {"a": "2", "b": "7"}
    with engine.begin() as conn:
        checkpoints.save_batch(conn, [spec.id], [_message("a", "3").checkpoint])
    assert checkpoints.load(engine, [wid]) == {"a": "3", "b": "7"}


def test_a_rolled_back_delivery_leaves_no_checkpoint(engine: Engine) -> None:
    (wid,) = _watchers(engine, 1)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        checkpoints.save(conn, [wid], {"a": "5"})
        raise RuntimeError("the delivery failed before its commit")
    assert checkpoints.load(engine, [wid]) == {}


def test_watchers_of_one_consumer_resume_from_the_one_furthest_behind(engine: Engine) -> None:
    first, second = _watchers(engine, 2)
    with engine.begin() as conn:
        checkpoints.save(conn, [first, second], {"a": "10"})
    with engine.begin() as conn:
        checkpoints.save(conn, [first], {"a": "20", "b": "3"})
    # The second watcher was last written earlier: it is the one behind on shard a.
    assert checkpoints.load(engine, [first, second]) == {"a": "10", "b": "3"}
    assert checkpoints.load(engine, [first]) == {"a": "20", "b": "3"}
    assert checkpoints.load(engine, []) == {}


def test_the_migrated_table_matches_its_declaration(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    assert [d for d in diff if "stream_checkpoint" in repr(d)] == []


def test_downgrade_to_0009_drops_it_and_upgrade_brings_it_back(engine: Engine) -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0009")
    assert "stream_checkpoint" not in inspect(engine).get_table_names()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    assert "stream_checkpoint" in inspect(engine).get_table_names()
