"""One reader of connections: broker URLs, Airflow's provider triggers and `BaseHook` see the same variables."""

from __future__ import annotations

import json

import pytest

from herald.airflow.connections import BaseHook
from herald.providers.connections import get_connection
from herald.triggers.urls import connection_variables, read_connection, with_connection


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in connection_variables("box"):
        monkeypatch.delenv(name, raising=False)


def test_herald_conn_wins_over_airflow_conn_for_every_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_BOX", "redis://:old@old.example:6379/0")
    monkeypatch.setenv("HERALD_CONN_BOX", "redis://:new@new.example:6380/1")
    assert read_connection("box") == ("HERALD_CONN_BOX", "redis://:new@new.example:6380/1")
    assert with_connection("redis://_/?stream=s", "box").startswith("redis://:new@new.example:6380/1?")
    assert get_connection("box").host == "new.example"  # type: ignore[union-attr]
    assert BaseHook.get_connection("box").host == "new.example"


def test_airflow_conn_is_read_when_herald_conn_is_not_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_BOX", "amqp://u:p@10.0.0.1:5672?prefetch=10")
    assert read_connection("box") == ("AIRFLOW_CONN_BOX", "amqp://u:p@10.0.0.1:5672?prefetch=10")
    merged = with_connection("amqp:///%2F?queue=orders", "box")
    assert merged.startswith("amqp://u:p@10.0.0.1:5672/%2F?") and "prefetch=10" in merged
    assert get_connection("box").port == 5672  # type: ignore[union-attr]
    assert BaseHook.get_connection("box").login == "u"


def test_an_empty_variable_is_not_a_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_CONN_BOX", "  ")
    assert read_connection("box") is None
    assert get_connection("box") is None
    with pytest.raises(ValueError, match=r"'box' is not defined: set HERALD_CONN_BOX \(or AIRFLOW_CONN_BOX\)"):
        with_connection("amqp:///x", "box")


def test_a_queue_url_refuses_the_json_form_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_BOX", json.dumps({"conn_type": "redis", "host": "h", "port": 6379}))
    with pytest.raises(ValueError, match="AIRFLOW_CONN_BOX holds a connection in JSON form"):
        with_connection("redis://_/0?stream=s", "box")
    # Airflow's readers take the JSON form.
    assert get_connection("box").host == "h"  # type: ignore[union-attr]
    assert BaseHook.get_connection("box").port == 6379
