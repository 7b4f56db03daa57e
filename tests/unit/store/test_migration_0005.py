"""Migration 0005 creates the `variable` table as store/tables.py declares it, and drops it on downgrade."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from herald.store import tables as t
from herald.store.migrate import alembic_config


def test_the_migrated_variable_table_matches_its_declaration(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    assert [d for d in diff if "variable" in repr(d)] == []


def test_downgrade_to_0004_drops_it_and_upgrade_brings_it_back(engine: Engine) -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
    assert "variable" not in inspect(engine).get_table_names()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    assert "variable" in inspect(engine).get_table_names()
