"""Compatibility suite fixtures: a Herald standalone whose DAGs folder is the ported Airflow corpus."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Herald


@pytest.fixture
def herald(tmp_path: Path, database_url: str) -> Iterator[Herald]:
    """A Herald home on SQLite or PostgreSQL (the test runs on both); stopped at the end."""
    h = Herald(tmp_path / "home", database_url)
    yield h
    if h.proc is not None:
        h.stop()
