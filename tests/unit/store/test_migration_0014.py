"""Migration 0014 (SQLite and PostgreSQL): the lost-worker history, the `lost` flag of a result, and
the index retention uses, as declared in `store.tables`; down to 0011 and back up."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from herald.store import tables as t
from herald.store.migrate import alembic_config


def _mine(diff: list[object]) -> list[object]:
    return [d for d in diff if any(k in repr(d) for k in ("task_requeue", "'lost'", "ix_event_queue_event_id"))]


def test_the_migrated_schema_matches_its_declaration(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    assert _mine(diff) == []


def test_downgrade_to_0011_removes_it_and_upgrade_brings_it_back(engine: Engine) -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0011")
    found = inspect(engine)
    assert "task_requeue" not in found.get_table_names()
    assert "lost" not in {c["name"] for c in found.get_columns("task_result")}
    assert "ix_event_queue_event_id" not in {i["name"] for i in found.get_indexes("event_queue")}
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    found = inspect(engine)
    assert "task_requeue" in found.get_table_names()
    assert "lost" in {c["name"] for c in found.get_columns("task_result")}
    assert "ix_event_queue_event_id" in {i["name"] for i in found.get_indexes("event_queue")}
