"""What the database can store and the faces can show (`herald.store.storable`), and the store applying it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from herald.store import tables as t
from herald.store import tries as store_tries
from herald.store.storable import (
    clean_json,
    clean_text,
    displayable,
    displayable_object,
    fit_key,
    json_loads,
    json_problem,
)
from herald.store.types import utcnow


def nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_clean_text_replaces_nul_and_lone_surrogates_and_keeps_the_rest() -> None:
    assert clean_text("a\x00b\ud800c\udfff") == "a\ufffdb\ufffdc\ufffd"
    kept = "plain text, é, 😀"
    assert clean_text(kept) is kept


def test_fit_key_keeps_keys_distinct_and_within_the_column() -> None:
    short = "queue|id"
    assert fit_key(short) == short
    a, b = fit_key("k" * 600 + "a"), fit_key("k" * 600 + "b")
    assert len(a) == len(b) == 500 and a != b
    assert fit_key("k" * 600 + "a") == a
    assert fit_key("a\x00b") == "a\ufffdb"


def test_clean_json_cleans_keys_and_values_at_every_level() -> None:
    assert clean_json({"k\x00": ["v\ud800", {"x": "\x00"}], "n": 1}) == {
        "k\ufffd": ["v\ufffd", {"x": "\ufffd"}],
        "n": 1,
    }


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"v": float("nan")}, "not JSON"),
        ([1, float("inf")], "not JSON"),
        ({"s": "\ud800"}, "lone surrogate"),
        ({"\udc80": 1}, "lone surrogate"),
        ({1: "a"}, "not a string"),
        ({"s": {1, 2}}, "set, which is not a JSON type"),
        (nested(65), "nested more than 64 levels deep"),
        (nested(5000), "nested more than 64 levels deep"),  # the check itself never recurses
    ],
)
def test_json_problem_names_why_a_value_cannot_be_stored(value: Any, reason: str) -> None:
    problem = json_problem(value, 64, "the payload")
    assert problem is not None and reason in problem


@pytest.mark.parametrize("value", [None, 1, 1.5, True, "a\x00b", {"a": [1, {"b": None}]}, nested(64), "😀"])
def test_json_problem_accepts_strict_json(value: Any) -> None:
    assert json_problem(value, 64) is None


def test_displayable_makes_any_stored_value_strict_json() -> None:
    shown = displayable({"v": float("nan"), "w": float("-inf"), "s": "\ud800", "d": nested(300)})
    json.dumps(shown, allow_nan=False).encode("utf-8")  # what the API does with it
    assert shown["v"] == "NaN" and shown["w"] == "-Infinity" and shown["s"] == "\ufffd"
    assert "not shown" in json.dumps(shown)
    fine = {"a": [1, 2]}
    assert displayable(fine) is fine
    assert displayable_object("a note") == {"unreadable": "a note"}


def test_json_loads_reads_a_value_too_deep_to_decode_as_a_note() -> None:
    assert json_loads('{"a": [1]}') == {"a": [1]}
    assert "too deep to read" in json_loads("[" * 5000 + "]" * 5000)


def test_logs_and_errors_with_nul_are_stored_sanitised(engine: Engine) -> None:
    now = utcnow()
    with engine.begin() as conn:
        asset_run = conn.execute(
            insert(t.dag_run)
            .values(run_id="r", dag_id="d", state="running", run_type="manual", conf={}, queued_at=now)
            .returning(t.dag_run.c.id)
        ).scalar_one()
        ti_id = conn.execute(
            insert(t.task_instance)
            .values(run_pk=asset_run, dag_id="d", task_id="t", state="running", try_number=1, max_tries=1)
            .returning(t.task_instance.c.id)
        ).scalar_one()
        store_tries.write_ends(
            conn, [{"id": ti_id, "state": "failed", "ended_at": now, "log": "a\x00b\ud800", "error": "e\x00"}]
        )
        store_tries.store_results(conn, [{"ti_id": ti_id, "state": "failed", "log": "x\x00", "error": "y\x00"}])
    with engine.connect() as conn:
        row = conn.execute(select(t.task_instance.c.log, t.task_instance.c.error)).one()
        stored = conn.execute(select(t.task_result.c.log, t.task_result.c.error)).one()
    assert (row.log, row.error) == ("a\ufffdb\ufffd", "e\ufffd")
    assert (stored.log, stored.error) == ("x\ufffd", "y\ufffd")
