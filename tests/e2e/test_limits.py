"""Sizes are capped (issue 13, item 5): what one message, task or request brings is kept only up to a setting.

One standalone per database with small caps: a dead letter keeps the head of its
body, a task's log its tail, a large return value fails its task, a large request
body is answered 413, and listings show previews while the item's endpoint has
the whole. After each, the unrelated canary DAG still runs.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Herald
from tests.e2e.standalone_per_db import CANARY_DAG, api, canary_keeps_running, standalone

DAGS = (
    """
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

big = Asset("big", watchers=[AssetWatcher("big_local", MessageQueueTrigger("local://big", max_payload_bytes=5000))])
hooks = Asset("hooks")


@dag(schedule=[big])
def on_big():
    @task
    def noop():
        return None

    noop()


on_big()


@dag(schedule=[hooks])
def on_hooks():
    @task
    def noop():
        return None

    noop()


on_hooks()


@dag(schedule=None)
def loud():
    @task
    def chatter():
        for i in range(20000):
            print(f"line {i:05d} " + "z" * 100)
        print("THE END")
        return "done"

    @task.bash
    def one_long_line():
        return "head -c 3000000 /dev/zero | tr '\\\\0' a; echo; echo LAST-LINE"

    chatter()
    one_long_line()


loud()


@dag(schedule=None)
def heavy():
    @task
    def large():
        return "x" * 5000

    @task
    def small():
        return "fine"

    large()
    small()


heavy()
"""
    + CANARY_DAG
)

CAPS = {
    "HERALD_MAX_DEAD_LETTER_BODY_BYTES": "1000",
    "HERALD_MAX_LOG_BYTES": "4096",
    "HERALD_MAX_RESULT_BYTES": "2000",
    "HERALD_MAX_REQUEST_BYTES": "8192",
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def herald(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    with standalone(request.param, tmp_path_factory, DAGS, CAPS) as h:
        yield h


def test_a_dead_letter_keeps_the_head_of_its_body(herald: Herald) -> None:
    body = b"{" + b"a" * 19_998 + b"}"  # past the watcher's max_payload_bytes: a dead letter
    herald.publish("big", body)

    def listed() -> dict[str, Any] | None:
        status, page = api(herald, "/dead-letters?limit=100")
        assert status == 200, page
        return next((d for d in page["items"] if d["body_size"] == len(body)), None)

    summary = herald.wait_for(listed, 60, "the dead letter of the large message")
    assert summary["body_truncated"] is True
    assert summary["body"] == body[:1000].decode()  # a listing's preview is within the stored head
    status, whole = api(herald, f"/dead-letters/{summary['id']}")
    assert status == 200
    assert whole["body"] == body[:1000].decode() and whole["body_size"] == 20_000 and whole["body_truncated"]
    assert "max_payload_bytes" in whole["error"]
    # half a message cannot be replayed
    status, answer = api(herald, f"/dead-letters/{summary['id']}/replay", b"")
    assert status == 409, answer
    assert "HERALD_MAX_DEAD_LETTER_BODY_BYTES" in answer["message"]
    shown = herald.cli_json("dead-letters", "list")
    assert any(d["id"] == summary["id"] and d["body_truncated"] for d in shown)
    canary_keeps_running(herald)


def test_a_task_log_keeps_its_tail(herald: Herald) -> None:
    code, out = herald.cli("dags", "trigger", "loud")
    assert code == 0, out
    run = herald.wait_runs(1, "loud")[0]
    assert run["state"] == "success"

    chatter = herald.cli_json("tasks", "logs", run["run_id"], "chatter")
    log = chatter["log"]
    first, _, kept = log.partition("\n")
    assert "bytes of log dropped" in first and "HERALD_MAX_LOG_BYTES" in first
    assert len(log.encode()) <= 4096
    assert "THE END" in kept and "line 19999" in kept and "line 00000" not in kept
    bash = herald.cli_json("tasks", "logs", run["run_id"], "one_long_line")
    assert "bytes of log dropped" in bash["log"] and "LAST-LINE" in bash["log"]
    assert len(bash["log"].encode()) <= 4096
    assert bash["result"] == "LAST-LINE"  # the last line is still the bash task's return value
    canary_keeps_running(herald)


def test_a_return_value_past_the_cap_fails_its_task(herald: Herald) -> None:
    code, out = herald.cli("dags", "trigger", "heavy")
    assert code == 0, out
    run = herald.wait_runs(1, "heavy")[0]

    tasks = {t["task_id"]: t for t in herald.cli_json("runs", "show", run["run_id"])["tasks"]}
    assert tasks["large"]["state"] == "failed"
    assert "HERALD_MAX_RESULT_BYTES" in tasks["large"]["error"] and "5002 bytes" in tasks["large"]["error"]
    assert tasks["small"]["state"] == "success" and tasks["small"]["result"] == "fine"
    canary_keeps_running(herald)


def _events(herald: Herald) -> int:
    return len(herald.cli_json("events", "list", "--asset", "hooks", "--limit", "100000"))


def test_a_request_body_past_the_cap_is_refused_before_it_is_read(herald: Herald) -> None:
    before = _events(herald)
    status, answer = api(herald, "/assets/hooks/events", {"extra": {"blob": "b" * 20_000}})
    assert status == 413, answer
    assert "HERALD_MAX_REQUEST_BYTES" in answer["message"]

    # no Content-Length (chunked): read up to the cap, then refused
    conn = http.client.HTTPConnection("127.0.0.1", herald.port, timeout=30)
    try:
        chunks = (b'{"extra": {"blob": "' + b"c" * 4000, b"c" * 4000, b"c" * 4000 + b'"}}')
        conn.request(
            "POST",
            "/api/v1/assets/hooks/events",
            body=iter(chunks),
            headers={"Authorization": f"Bearer {herald.token}", "Content-Type": "application/json"},  # type: ignore[attr-defined]
            encode_chunked=True,
        )
        response = conn.getresponse()
        assert response.status == 413, response.read()
    finally:
        conn.close()
    assert _events(herald) == before
    # a body within the cap is read as before, chunked or not
    status, event = api(herald, "/assets/hooks/events", {"extra": {"small": True}})
    assert status == 201, event
    canary_keeps_running(herald)


def test_listings_show_previews_and_the_item_has_the_whole(herald: Herald) -> None:
    large = {"blob": "q" * 5000}
    status, event = api(herald, "/assets/hooks/events", {"extra": large})
    assert status == 201, event
    status, tiny = api(herald, "/assets/hooks/events", {"extra": {"tiny": True}})
    assert status == 201, tiny
    assert event["extra"] == large  # the item itself: whole

    status, page = api(herald, "/events?asset=hooks&limit=100")
    assert status == 200
    listed = next(e for e in page["items"] if e["id"] == event["id"])
    assert listed["extra"] == {}
    assert listed["extra_size"] >= 5000
    assert listed["extra_preview"].startswith('{"blob"') and len(listed["extra_preview"]) <= 2000
    small = next(e for e in page["items"] if e["id"] == tiny["id"])
    assert small["extra"] == {"tiny": True} and small["extra_preview"] is None
    status, whole = api(herald, f"/events/{event['id']}")
    assert status == 200 and whole["extra"] == large

    rows = herald.cli_json("events", "list", "--asset", "hooks")
    assert next(r for r in rows if r["id"] == event["id"])["extra_preview"] is not None
    shown = herald.cli_json("events", "show", str(event["id"]))
    assert shown["extra"] == large
