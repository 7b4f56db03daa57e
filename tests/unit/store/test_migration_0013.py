"""Migration 0013: the waits of deferred tries, the keys of absences, and a result's deferral."""

from __future__ import annotations

import importlib

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from herald.store import tables as t
from herald.store.migrate import alembic_config

MIGRATION = importlib.import_module("herald.store.migrations.versions.0013_waits")
TABLES = ("task_wait", "task_wait_cursor", "asset_key_seen")


def test_the_migrated_tables_match_their_declarations(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    assert [d for d in diff if any(name in repr(d) for name in (*TABLES, "'defer'"))] == []


def test_downgrade_drops_them_and_upgrade_brings_them_back(engine: Engine) -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, MIGRATION.down_revision)
    assert not set(TABLES) & set(inspect(engine).get_table_names())
    assert "defer" not in {c["name"] for c in inspect(engine).get_columns("task_result")}
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    assert set(TABLES) <= set(inspect(engine).get_table_names())
    assert "defer" in {c["name"] for c in inspect(engine).get_columns("task_result")}
