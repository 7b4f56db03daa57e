"""store/variables.py: the functions `Variable.get` / `Variable.set` call, and which keys are secrets."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select

from herald.store import tables as t
from herald.store.variables import (
    MASK,
    delete_variable,
    get_variable,
    get_variable_row,
    is_sensitive,
    list_variables,
    masked,
    set_variable,
)


def test_set_then_get_and_a_missing_key_is_none(engine: Engine) -> None:
    with engine.begin() as conn:
        set_variable(conn, "bucket", "s3://data")
    with engine.connect() as conn:
        assert get_variable(conn, "bucket") == "s3://data"
        assert get_variable(conn, "missing") is None


def test_set_twice_replaces_the_value_in_one_row_and_keeps_the_description(engine: Engine) -> None:
    with engine.begin() as conn:
        set_variable(conn, "bucket", "one", "where files land")
    first = _row(engine, "bucket")
    with engine.begin() as conn:
        set_variable(conn, "bucket", "two")
    second = _row(engine, "bucket")
    assert (second.value, second.description) == ("two", "where files land")
    assert second.updated_at >= first.updated_at
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.variable)).scalar_one() == 1
    with engine.begin() as conn:
        set_variable(conn, "bucket", "three", "new description")
    assert _row(engine, "bucket").description == "new description"


def test_an_empty_string_is_a_value_not_a_missing_variable(engine: Engine) -> None:
    with engine.begin() as conn:
        set_variable(conn, "empty", "")
    with engine.connect() as conn:
        assert get_variable(conn, "empty") == ""


def test_delete_says_whether_there_was_one(engine: Engine) -> None:
    with engine.begin() as conn:
        set_variable(conn, "gone", "x")
        assert delete_variable(conn, "gone") is True
        assert delete_variable(conn, "gone") is False
        assert get_variable(conn, "gone") is None


def test_list_is_by_key_and_limited(engine: Engine) -> None:
    with engine.begin() as conn:
        for key in ("c", "a", "b"):
            set_variable(conn, key, key.upper())
    with engine.connect() as conn:
        assert [r.key for r in list_variables(conn)] == ["a", "b", "c"]
        assert [(r.key, r.value) for r in list_variables(conn, limit=2)] == [("a", "A"), ("b", "B")]
        assert [r.key for r in list_variables(conn, 2, offset=2)] == ["c"]


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("db_password", True),
        ("SLACK_TOKEN", True),
        ("stripe_api_key", True),
        ("ApiKey", True),
        ("client_secret", True),
        ("ssh_private_key", True),
        ("Authorization", True),
        ("passwd", True),
        ("bucket", False),
        ("threshold", False),
    ],
)
def test_keys_that_name_a_secret_are_masked(key: str, secret: bool) -> None:
    assert is_sensitive(key) is secret


def test_masked_replaces_only_a_secret_value(engine: Engine) -> None:
    with engine.begin() as conn:
        set_variable(conn, "db_password", "hunter2")
        set_variable(conn, "bucket", "s3://data")
    assert masked(_row(engine, "db_password")).value == MASK
    assert masked(_row(engine, "bucket")).value == "s3://data"


def _row(engine: Engine, key: str):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        row = get_variable_row(conn, key)
    assert row is not None
    return row


def test_variables_and_task_logs_mask_the_same_names() -> None:
    from herald.sdk import masking
    from herald.store import variables

    assert variables.is_sensitive is masking.is_sensitive
    for key in ("gcp_keyfile_dict", "MY_SERVICE_ACCOUNT", "db_password", "API_KEY"):
        assert masking.is_sensitive(key), key
    assert not masking.is_sensitive("region")
