"""Bring a database to the newest schema with Alembic."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect, text

HERE = Path(__file__).parent
#: an arbitrary constant: the PostgreSQL advisory lock that makes migrations one at a time
MIGRATION_LOCK = 7_236_402


def alembic_config(url: str) -> Config:
    """Alembic's configuration for Herald's single migration tree."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, *, create_empty: bool = True) -> None:
    """Apply every pending migration (a no-op on an up-to-date database).

    An empty database (a first start) is made from the declared tables in one go
    and stamped at the newest revision, instead of replaying every migration
    (SQLite rebuilds a table for each column a migration adds: seconds on a first
    start, and for every test database). `tests/unit/store/test_migrations_match_tables.py`
    replays the migrations from nothing (`create_empty=False`) and checks they make
    exactly these tables, so the two paths give the same schema.

    Processes started together (two schedulers, a triggerer and a worker) each
    migrate at start-up: on PostgreSQL they take turns under a transaction-level
    advisory lock, so the second finds the schema current instead of creating the
    same tables at the same moment. SQLite's write lock already serialises them.
    """
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        if create_empty and not inspect(conn).get_table_names():
            from herald.store.tables import metadata

            metadata.create_all(conn)
            command.stamp(cfg, "head")
        else:
            command.upgrade(cfg, "head")


def is_current(engine: Engine) -> bool:
    """True when the schema exists (cheap check before a full upgrade)."""
    return "alembic_version" in inspect(engine).get_table_names()
