"""Variables (Airflow's `Variable`): list, get, set, create, update, delete.

Commands return values unmasked; each face shows a sensitive one
(`herald.sdk.masking.is_sensitive`) as `***` unless asked to reveal it.
"""

from __future__ import annotations

import json

from sqlalchemy import Engine

from herald.commands.errors import Conflict, Invalid, NotFound
from herald.store import variables
from herald.store.variables import MAX_KEY_LENGTH, VariableRow

LIST_HINT = "list variables with: herald variables list (GET /api/v1/variables)"


def _check_key(key: str) -> None:
    if not key or not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise Invalid(f"a variable key must be 1 to {MAX_KEY_LENGTH} characters, got {len(key)}")


def _check_json(key: str, value: str) -> None:
    try:
        json.loads(value)
    except ValueError as exc:
        raise Invalid(f"the value of {key!r} is not valid JSON: {exc}", "drop --json to store it as text") from None


def list_all(engine: Engine, limit: int = 100, offset: int = 0) -> list[VariableRow]:
    """Variables by key, values unmasked."""
    with engine.connect() as conn:
        return variables.list_variables(conn, limit, offset=offset)


def get(engine: Engine, key: str) -> VariableRow:
    """The variable `key`, value unmasked.

    Raises:
        NotFound: no such variable.
    """
    with engine.connect() as conn:
        row = variables.get_variable_row(conn, key)
    if row is None:
        raise NotFound(f"no variable {key!r}", LIST_HINT)
    return row


def set_value(
    engine: Engine, key: str, value: str, description: str | None = None, *, as_json: bool = False
) -> VariableRow:
    """Create or replace the variable `key` (a None `description` keeps the stored one).

    Raises:
        Invalid: an empty or too long key, or (with `as_json`) a value that is not JSON.
    """
    _check_key(key)
    if as_json:
        _check_json(key, value)
    with engine.begin() as conn:
        variables.set_variable(conn, key, value, description)
        row = variables.get_variable_row(conn, key)
    assert row is not None
    return row


def create(engine: Engine, key: str, value: str, description: str | None = None) -> VariableRow:
    """Create the variable `key`.

    Raises:
        Invalid: an empty or too long key.
        Conflict: the variable exists.
    """
    _check_key(key)
    with engine.begin() as conn:
        if variables.get_variable(conn, key) is not None:
            raise Conflict(
                f"variable {key!r} exists",
                f"change it with: herald variables set (PATCH /api/v1/variables/{key})",
            )
        variables.set_variable(conn, key, value, description)
        row = variables.get_variable_row(conn, key)
    assert row is not None
    return row


def update(engine: Engine, key: str, value: str | None = None, description: str | None = None) -> VariableRow:
    """Change the value and/or the description of the variable `key`.

    Raises:
        NotFound: no such variable.
    """
    with engine.begin() as conn:
        current = variables.get_variable_row(conn, key)
        if current is None:
            raise NotFound(f"no variable {key!r}", LIST_HINT)
        variables.set_variable(conn, key, current.value if value is None else value, description)
        row = variables.get_variable_row(conn, key)
    assert row is not None
    return row


def delete(engine: Engine, key: str) -> None:
    """Delete the variable `key`.

    Raises:
        NotFound: no such variable.
    """
    with engine.begin() as conn:
        found = variables.delete_variable(conn, key)
    if not found:
        raise NotFound(f"no variable {key!r}", LIST_HINT)
