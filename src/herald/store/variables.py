"""Variables: key/value pairs a DAG reads with `Variable.get` (the `variable` table).

These functions take the caller's connection and never commit: the caller owns
the transaction. Values are stored as text; a JSON value is the caller's to
encode and decode (`Variable.set(..., serialize_json=True)`).

Masking: a variable whose key names a secret (`SENSITIVE_NAMES`, the words
Airflow treats as sensitive) is shown as `MASK` by every face (CLI listings,
API, UI). `is_sensitive` (`herald.sdk.masking`, shared with the masking of
task logs) is the one test for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from herald.sdk.masking import is_sensitive
from herald.store import tables as t
from herald.store.types import utcnow

#: what a sensitive value is shown as
MASK = "***"
#: the longest key the `variable` table holds
MAX_KEY_LENGTH = 250


@dataclass(frozen=True)
class VariableRow:
    """One stored variable."""

    key: str
    value: str
    description: str | None
    updated_at: datetime


def masked(row: VariableRow) -> VariableRow:
    """`row` with its value replaced by `MASK` when its key names a secret."""
    if not is_sensitive(row.key):
        return row
    return VariableRow(row.key, MASK, row.description, row.updated_at)


def sensitive_values(conn: Connection) -> set[str]:
    """The values of the variables whose keys name a secret, to mask them wherever they might show."""
    rows = conn.execute(select(t.variable.c.key, t.variable.c.val)).all()
    return {str(r.val) for r in rows if r.val and is_sensitive(r.key)}


def get_variable(conn: Connection, key: str) -> str | None:
    """The value of `key`, or None when there is no such variable."""
    value = conn.execute(select(t.variable.c.val).where(t.variable.c.key == key)).scalar()
    return None if value is None else str(value)


def get_variable_row(conn: Connection, key: str) -> VariableRow | None:
    """The variable `key` with its description and last update, or None."""
    v = t.variable
    row = conn.execute(select(v.c.key, v.c.val, v.c.description, v.c.updated_at).where(v.c.key == key)).first()
    return None if row is None else VariableRow(row.key, row.val, row.description, row.updated_at)


def set_variable(conn: Connection, key: str, value: str, description: str | None = None) -> None:
    """Create or replace the variable `key` (one statement: two writers never make two rows).

    A `description` of None keeps the stored description when the variable exists.
    """
    now = utcnow()
    values = {"key": key, "val": value, "description": description, "is_encrypted": False}
    changed = {"val": value, "is_encrypted": False, "updated_at": now}
    if description is not None:
        changed["description"] = description
    dialect = conn.dialect.name
    if dialect == "postgresql":
        pg = postgresql.insert(t.variable).values(**values, created_at=now, updated_at=now)
        conn.execute(pg.on_conflict_do_update(index_elements=[t.variable.c.key], set_=changed))
    elif dialect == "sqlite":
        lite = sqlite.insert(t.variable).values(**values, created_at=now, updated_at=now)
        conn.execute(lite.on_conflict_do_update(index_elements=[t.variable.c.key], set_=changed))
    else:
        raise NotImplementedError(f"unsupported database {dialect}")


def delete_variable(conn: Connection, key: str) -> bool:
    """Delete the variable `key`; False when there was none."""
    return bool(conn.execute(delete(t.variable).where(t.variable.c.key == key)).rowcount)


def list_variables(conn: Connection, limit: int = 100, *, offset: int = 0) -> list[VariableRow]:
    """Variables by key, values unmasked (the faces mask them with `masked`)."""
    v = t.variable
    rows = conn.execute(
        select(v.c.key, v.c.val, v.c.description, v.c.updated_at).order_by(v.c.key).limit(limit).offset(offset)
    ).all()
    return [VariableRow(r.key, r.val, r.description, r.updated_at) for r in rows]
