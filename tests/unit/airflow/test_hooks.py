"""Connections from the environment (URI and JSON), and variables from the environment or the store."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from herald import AirflowNotFoundException, BaseHook, Connection, Variable


def test_connection_from_an_airflow_uri_is_parsed_and_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", "postgres://user:s%40cret@db.example:5433/sales?sslmode=require")
    conn = BaseHook.get_connection("warehouse")
    assert (conn.conn_type, conn.host, conn.login, conn.password, conn.port, conn.schema) == (
        "postgres",
        "db.example",
        "user",
        "s@cret",
        5433,
        "sales",
    )
    assert conn.extra_dejson == {"sslmode": "require"}
    assert "s@cret" not in repr(conn) and "***" in repr(conn)
    assert Connection.get("warehouse").get_uri().startswith("postgres://user:s%40cret@db.example:5433/sales")


def test_herald_conn_wins_and_json_form_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_API", "http://old")
    monkeypatch.setenv("HERALD_CONN_API", '{"conn_type": "http", "host": "api.local", "port": 8080, "extra": {"k": 1}}')
    conn = Connection.get("api")
    assert (conn.conn_type, conn.host, conn.port, conn.extra_dejson) == ("http", "api.local", 8080, {"k": 1})
    with pytest.raises(AirflowNotFoundException, match="isn't defined"):
        Connection.get("nope")


def test_variables_come_from_the_environment_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_CONFIG", '{"a": 1}')
    monkeypatch.setenv("HERALD_VAR_NAME", "herald")
    assert Variable.get("config", deserialize_json=True) == {"a": 1}
    assert Variable.get("name") == "herald"


def test_variables_fall_back_to_the_metadata_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # herald.store.variables is written by another change; stand in for it with its agreed functions
    stored: dict[str, str] = {}
    fake = types.ModuleType("herald.store.variables")
    fake.get_variable = lambda conn, key: stored.get(key)  # type: ignore[attr-defined]
    fake.set_variable = lambda conn, key, value, description=None: stored.__setitem__(key, value)  # type: ignore[attr-defined]
    fake.delete_variable = lambda conn, key: stored.pop(key, None) is not None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "herald.store.variables", fake)
    monkeypatch.setenv("HERALD_DATABASE_URL", f"sqlite:///{tmp_path}/h.db")
    Variable.set("limits", {"max": 3}, serialize_json=True)
    assert Variable.get("limits", deserialize_json=True) == {"max": 3}
    assert Variable.get("absent", default="d") == "d"
    assert Variable.get("absent", default_var=None) is None
    with pytest.raises(KeyError, match="does not exist"):
        Variable.get("absent")
    assert Variable.delete("limits") is True and Variable.delete("limits") is False
