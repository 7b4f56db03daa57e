"""Migration 0009 creates the alias tables and the source columns as store/tables.py declares them."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from herald.store import tables as t
from herald.store.migrate import alembic_config

TABLES = ("asset_alias", "asset_alias_asset", "asset_alias_event", "dag_schedule_alias")


def test_the_migrated_alias_tables_and_columns_match_their_declaration(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    mine = [d for d in diff if any(name in repr(d) for name in (*TABLES, "source_", "outlet_alias_events"))]
    assert mine == []


def test_downgrade_to_0008_drops_them_and_upgrade_brings_them_back(engine: Engine) -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0008")
    inspector = inspect(engine)
    assert not set(TABLES) & set(inspector.get_table_names())
    assert "source_dag_id" not in {c["name"] for c in inspector.get_columns("asset_event")}
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    inspector = inspect(engine)
    assert set(TABLES) <= set(inspector.get_table_names())
    assert {"source_dag_id", "source_task_id", "source_run_id", "source_map_index"} <= {
        c["name"] for c in inspector.get_columns("asset_event")
    }
