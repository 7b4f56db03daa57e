"""An empty migrated metadata database, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from herald.config import normalise_database_url
from herald.store.db import make_engine
from herald.store.migrate import upgrade

# The database seeded with DAGs, a watcher and rows as processes write them, shared with the commands' tests.
from tests.unit.commands.conftest import db  # noqa: F401


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """The metadata database, migrated to the newest revision."""
    found = make_engine(normalise_database_url(database_url))
    upgrade(found)
    yield found
    found.dispose()
