"""Nothing one message or one task does stops Herald for everyone else (docs/adr/0004-isolation.md).

One `herald standalone` per database (SQLite and PostgreSQL) serves every case of
this module, with an unrelated canary DAG: after each hostile message or task,
a new canary message must still become a successful run, and the API must
still answer the listings.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Herald
from tests.e2e.standalone_per_db import api, canary_keeps_running, standalone

DAGS = """
import time

from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task


def hang_or_pass(message):
    body = message.json()
    if body.get("hang"):
        time.sleep(3600)  # user code that never returns
    return body


canary = Asset("canary", watchers=[AssetWatcher("canary_local", MessageQueueTrigger("local://canary"))])
inbox = Asset("inbox", watchers=[AssetWatcher("inbox_local", MessageQueueTrigger("local://inbox"))])
slow = Asset(
    "slow", watchers=[AssetWatcher("slow_local", MessageQueueTrigger("local://slow", apply_function=hang_or_pass))]
)


@dag(schedule=[canary])
def canary_dag():
    @task
    def ping(triggering_asset_events):
        return triggering_asset_events[canary][0].extra["payload"]

    ping()


canary_dag()


@dag(schedule=[inbox])
def inbox_dag():
    @task
    def show(triggering_asset_events):
        return triggering_asset_events[inbox][0].extra["payload"]

    show()


inbox_dag()


@dag(schedule=[slow])
def slow_dag():
    @task
    def show(triggering_asset_events):
        return triggering_asset_events[slow][0].extra["payload"]

    show()


slow_dag()


@dag(schedule=None)
def nul_log():
    @task
    def shout():
        print("a\\x00b")
        return "printed"

    shout()


nul_log()


@dag(schedule=None)
def nan_result():
    @task
    def compute():
        return {"v": float("nan")}

    compute()


nan_result()
"""


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def herald(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    """One standalone Herald for the module, on SQLite or on a fresh PostgreSQL database."""
    with standalone(request.param, tmp_path_factory, DAGS, {"HERALD_APPLY_FUNCTION_TIMEOUT": "1"}) as h:
        yield h


def dead_letter(herald: Herald, body: bytes) -> dict[str, Any]:
    """Wait for the dead letter of a message with this body; return it."""

    def found() -> dict[str, Any] | None:
        status, page = api(herald, "/dead-letters?limit=500")
        assert status == 200, page
        return next((d for d in page["items"] if d["body"] == body.decode()), None)

    letter: dict[str, Any] = herald.wait_for(found, 60, f"the dead letter of {body[:40]!r}")
    return letter


def test_a_deeply_nested_message_is_a_dead_letter_and_scheduling_goes_on(herald: Herald) -> None:
    deep = b"[" * 500 + b"]" * 500
    herald.publish("inbox", deep, {"after": "deep"})

    letter = dead_letter(herald, deep)
    assert "nested more than 64 levels deep" in letter["error"]
    canary_keeps_running(herald)
    # the message after it in the same queue became a run as usual
    herald.wait_for(
        lambda: any(
            t["result"] == {"after": "deep"}
            for r in herald.runs("inbox_dag", "success")
            for t in herald.cli_json("runs", "show", r["run_id"])["tasks"]
        ),
        60,
        "the run of the message after the deep one",
    )
    status, _ = api(herald, "/events?limit=500")
    assert status == 200


def test_messages_that_are_not_strict_json_are_dead_letters(herald: Herald) -> None:
    bodies = [b'{"v": NaN}', b'{"v": -Infinity}', b'{"s": "\\ud800"}']
    herald.publish("inbox", *bodies)

    reasons = [dead_letter(herald, body)["error"] for body in bodies]
    assert "not JSON" in reasons[0] and "not JSON" in reasons[1]
    assert "lone surrogate" in reasons[2]
    canary_keeps_running(herald)
    watchers = {w["name"]: w for w in herald.cli_json("watchers", "list")}
    assert watchers["inbox_local"]["state"] == "running"
    status, _ = api(herald, "/events?limit=500")
    assert status == 200


def test_the_webhook_refuses_what_it_could_not_store_before_committing(herald: Herald) -> None:
    before = len(herald.cli_json("events", "list", "--asset", "inbox", "--limit", "100000"))
    for body in (
        b'{"extra": {"v": NaN}}',
        b'{"extra": {"s": "\\ud800"}}',
        b'{"extra": {"d": ' + b"[" * 100 + b"]" * 100 + b"}}",
    ):
        status, answer = api(herald, "/assets/inbox/events", body)
        assert status == 422, answer
    after = len(herald.cli_json("events", "list", "--asset", "inbox", "--limit", "100000"))
    assert after == before  # nothing was committed
    canary_keeps_running(herald)


def test_a_task_printing_nul_succeeds_and_its_log_is_stored(herald: Herald) -> None:
    code, out = herald.cli("dags", "trigger", "nul_log")
    assert code == 0, out
    run = herald.wait_runs(1, "nul_log")[0]

    assert run["state"] == "success"
    log = herald.cli_json("tasks", "logs", run["run_id"], "shout")
    assert "a\ufffdb" in log["log"]
    canary_keeps_running(herald)


def test_a_task_returning_nan_fails_with_the_reason(herald: Herald) -> None:
    code, out = herald.cli("dags", "trigger", "nan_result")
    assert code == 0, out
    run = herald.wait_runs(1, "nan_result")[0]

    assert run["state"] == "failed"
    task = herald.cli_json("runs", "show", run["run_id"])["tasks"][0]
    assert "not JSON" in task["error"] or "JSON compliant" in task["error"]
    canary_keeps_running(herald)


def test_a_hanging_apply_function_is_a_dead_letter_and_nothing_freezes(herald: Herald) -> None:
    hang = json.dumps({"hang": True, "id": uuid.uuid4().hex}).encode()
    herald.publish("slow", hang, {"after": "hang"})

    # meanwhile the API answers and the canary runs: the hang is off the event loop
    status, _ = api(herald, "/dags")
    assert status == 200
    canary_keeps_running(herald)
    letter = dead_letter(herald, hang)
    assert "did not return within 1s" in letter["error"]
    herald.wait_for(
        lambda: any(
            t["result"] == {"after": "hang"}
            for r in herald.runs("slow_dag", "success")
            for t in herald.cli_json("runs", "show", r["run_id"])["tasks"]
        ),
        60,
        "the run of the message after the hanging one",
    )


def test_a_stored_event_too_deep_for_a_worker_fails_its_try_not_the_scheduler(herald: Herald) -> None:
    """An event stored before the limit existed (or by hand): its try fails, the scheduler goes on."""
    from herald.config import normalise_database_url
    from herald.store import queries
    from herald.store.db import make_engine
    from herald.store.events import insert_events
    from herald.store.runs import consumers_from_db
    from herald.store.types import utcnow

    engine = make_engine(normalise_database_url(herald.env["HERALD_DATABASE_URL"]), pool_size=0)
    try:
        deep: Any = []
        for _ in range(600):
            deep = [deep]
        with engine.begin() as conn:
            asset_id = queries.asset_id(conn, "inbox")
            assert asset_id is not None
            now = utcnow()
            row = {
                "asset_id": asset_id,
                "source": "old",
                "dedupe_key": None,
                "extra": {"payload": deep},
                "timestamp": now,
            }
            insert_events(conn, [row], consumers_from_db(conn, asset_id), now)
    finally:
        engine.dispose()

    def failed_run() -> Any:
        for run in herald.runs("inbox_dag", "failed"):
            task = herald.cli_json("runs", "show", run["run_id"])["tasks"][0]
            if task["error"] and "request could not be" in task["error"]:
                return task
        return None

    task = herald.wait_for(failed_run, 60, "the try of the too-deep event to fail")
    assert "RecursionError" in task["error"]
    canary_keeps_running(herald)
    status, _ = api(herald, "/events?limit=500")
    assert status == 200


def test_a_stored_event_too_deep_to_decode_is_read_as_a_note(herald: Herald) -> None:
    """A row written around Herald, too deep for Python's JSON decoder: its run goes on, so does every listing."""
    from sqlalchemy import text

    from herald.config import normalise_database_url
    from herald.store import queries
    from herald.store.db import make_engine
    from herald.store.events import insert_events
    from herald.store.runs import consumers_from_db
    from herald.store.types import utcnow

    engine = make_engine(normalise_database_url(herald.env["HERALD_DATABASE_URL"]), pool_size=0)
    try:
        with engine.begin() as conn:
            asset_id = queries.asset_id(conn, "inbox")
            assert asset_id is not None
            now = utcnow()
            row = {"asset_id": asset_id, "source": "old", "dedupe_key": uuid.uuid4().hex, "extra": {}, "timestamp": now}
            (event_id, _, _), *_ = insert_events(conn, [row], consumers_from_db(conn, asset_id), now)
            # written as text, in the transaction that queues it: no Python encoder goes 3,000 levels deep
            deep = '{"payload": ' + "[" * 3000 + "]" * 3000 + "}"
            conn.execute(text("UPDATE asset_event SET extra = :deep WHERE id = :id"), {"deep": deep, "id": event_id})
    finally:
        engine.dispose()

    def ended() -> Any:
        # its task reads `extra["payload"]` of what is now a note: it fails, as user code would on any string
        return [
            r for r in herald.runs("inbox_dag") if event_id in r["event_ids"] and r["state"] in ("success", "failed")
        ]

    herald.wait_for(ended, 60, "the run of the unreadable event to end")
    canary_keeps_running(herald)
    status, page = api(herald, "/events?limit=500")
    assert status == 200
    listed = next(e for e in page["items"] if e["id"] == event_id)
    assert listed["extra_preview"].startswith('{"payload": [[[')  # a listing shows its start, never decodes it
    status, stored = api(herald, f"/events/{event_id}")
    assert status == 200
    assert "too deep to read" in stored["extra"]["unreadable"]
