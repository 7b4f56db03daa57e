"""Bring a database to the newest schema with Alembic."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Column, Connection, Engine, MetaData, PrimaryKeyConstraint, String, Table, inspect, select, text

if TYPE_CHECKING:
    from alembic.config import Config

HERE = Path(__file__).parent
#: an arbitrary constant: the PostgreSQL advisory lock that makes migrations one at a time
MIGRATION_LOCK = 7_236_402
#: the newest migration (`migrations/versions/`): a database stamped with it needs nothing
#: from Alembic, whose import is a third of a second of every process start
#: (`tests/unit/store/test_migrations_match_tables.py` checks it is Alembic's head)
HEAD = "0029"

#: Alembic's own version table, as Alembic declares it
_version = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def alembic_config(url: str) -> Config:
    """Alembic's configuration for Herald's single migration tree."""
    from alembic.config import Config

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
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
        tables = inspect(conn).get_table_names()
        if "alembic_version" in tables and _revision(conn) == HEAD:
            return
        if create_empty and not tables:
            from herald.store.tables import metadata

            metadata.create_all(conn)
            _version.create(conn)
            conn.execute(_version.insert().values(version_num=HEAD))
            return
        from alembic import command

        cfg = alembic_config(engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _revision(conn: Connection) -> str | None:
    """The revision the database is stamped with (None: not stamped)."""
    rows = conn.execute(select(_version.c.version_num)).scalars().all()
    return rows[0] if len(rows) == 1 else None


def is_current(engine: Engine) -> bool:
    """True when the schema exists (cheap check before a full upgrade)."""
    return "alembic_version" in inspect(engine).get_table_names()
