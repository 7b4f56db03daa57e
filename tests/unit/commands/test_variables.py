"""commands/variables.py: set (with JSON validation), create, update, get, delete."""

from __future__ import annotations

import pytest

from herald.commands import variables
from herald.commands.errors import Conflict, Invalid, NotFound
from tests.unit.commands.conftest import Db


def test_set_get_update_delete(db: Db) -> None:
    variables.set_value(db.engine, "bucket", "s3://a", "where files land")
    assert variables.get(db.engine, "bucket").value == "s3://a"
    row = variables.update(db.engine, "bucket", value="s3://b")
    assert (row.value, row.description) == ("s3://b", "where files land")
    row = variables.update(db.engine, "bucket", description="moved")
    assert (row.value, row.description) == ("s3://b", "moved")
    assert [r.key for r in variables.list_all(db.engine)] == ["bucket"]
    variables.delete(db.engine, "bucket")
    with pytest.raises(NotFound, match="no variable 'bucket'"):
        variables.get(db.engine, "bucket")


def test_commands_return_secret_values_unmasked(db: Db) -> None:
    variables.set_value(db.engine, "db_password", "hunter2")
    assert variables.get(db.engine, "db_password").value == "hunter2"


def test_set_with_json_refuses_a_value_that_is_not_json(db: Db) -> None:
    with pytest.raises(Invalid, match="not valid JSON"):
        variables.set_value(db.engine, "config", "{bad", as_json=True)
    assert variables.set_value(db.engine, "config", '{"a": 1}', as_json=True).value == '{"a": 1}'


def test_wrong_keys_and_missing_or_existing_variables(db: Db) -> None:
    for key in ("", "  ", "k" * 251):
        with pytest.raises(Invalid):
            variables.set_value(db.engine, key, "v")
    variables.create(db.engine, "once", "1")
    with pytest.raises(Conflict, match="exists"):
        variables.create(db.engine, "once", "2")
    assert variables.get(db.engine, "once").value == "1"
    with pytest.raises(NotFound):
        variables.update(db.engine, "ghost", value="x")
    with pytest.raises(NotFound):
        variables.delete(db.engine, "ghost")
