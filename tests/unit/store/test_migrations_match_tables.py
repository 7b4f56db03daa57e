"""The migrations, run from nothing to head, make exactly the schema store/tables.py declares.

Every migration is written by hand; a column, index or table that one of them
forgets (or that tables.py forgets) would only show on a database made by the
other path. Migration 0017 (the charts' indexes) is checked by name as well.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from herald.config import normalise_database_url
from herald.store import tables as t
from herald.store.db import make_engine
from herald.store.migrate import upgrade


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A database migrated one migration at a time (not made from the declared tables)."""
    found = make_engine(normalise_database_url(database_url))
    upgrade(found, create_empty=False)
    yield found
    found.dispose()


def test_a_first_start_makes_the_declared_tables_at_the_newest_revision(database_url: str) -> None:
    from alembic.script import ScriptDirectory

    from herald.store.migrate import alembic_config

    made = make_engine(normalise_database_url(database_url))
    try:
        upgrade(made)
        with made.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), t.metadata) == []
            current = MigrationContext.configure(conn).get_current_revision()
        head = ScriptDirectory.from_config(alembic_config(str(made.url))).get_current_head()
        assert current == head
        upgrade(made)  # at head: nothing to do
    finally:
        made.dispose()


def test_head_matches_the_declared_tables(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    assert diff == []


def test_the_chart_indexes_exist(engine: Engine) -> None:
    inspector = inspect(engine)
    assert "ix_asset_event_source_timestamp" in {i["name"] for i in inspector.get_indexes("asset_event")}
    assert "ix_dag_run_dag_id_queued_at" in {i["name"] for i in inspector.get_indexes("dag_run")}
