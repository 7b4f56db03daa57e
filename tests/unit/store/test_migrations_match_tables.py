"""The migrations, run from nothing to head, make exactly the schema store/tables.py declares.

Every migration is written by hand; a column, index or table that one of them
forgets (or that tables.py forgets) would only show on a database made by the
other path. Migration 0017 (the charts' indexes) is checked by name as well.
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from herald.store import tables as t


def test_head_matches_the_declared_tables(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    assert diff == []


def test_the_chart_indexes_exist(engine: Engine) -> None:
    inspector = inspect(engine)
    assert "ix_asset_event_source_timestamp" in {i["name"] for i in inspector.get_indexes("asset_event")}
    assert "ix_dag_run_dag_id_queued_at" in {i["name"] for i in inspector.get_indexes("dag_run")}
