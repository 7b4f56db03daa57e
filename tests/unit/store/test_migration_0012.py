"""Migration 0012 (flow control): the run columns and indexes as declared, and a way back."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from herald.store import tables as t
from herald.store.migrate import alembic_config

FLOW_COLUMNS = {"run_key", "priority", "held_by", "held_until"}


def test_the_migrated_runs_table_matches_its_declaration(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    assert [d for d in diff if "dag_run" in repr(d)] == []
    indexes = {i["name"] for i in inspect(engine).get_indexes("dag_run")}
    assert {
        "ix_dag_run_dag_id_state_priority_id",
        "ix_dag_run_dag_id_run_key_state_id",
        "ix_dag_run_dag_id_run_key_started_at",
    } <= indexes


def test_downgrade_to_0011_drops_the_columns_and_upgrade_brings_them_back(engine: Engine) -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0011")
    assert not FLOW_COLUMNS & {c["name"] for c in inspect(engine).get_columns("dag_run")}
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    assert {c["name"] for c in inspect(engine).get_columns("dag_run")} >= FLOW_COLUMNS
