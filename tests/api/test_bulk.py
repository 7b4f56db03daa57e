"""Filters a person searches with, and the actions over a filter: payload search, dead
letters by reason, replay of a filter's dead letters, retry of a filter's failed runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from herald.store import tables as t
from herald.store.types import utcnow
from tests.api.conftest import Api


@pytest.fixture
def api(api_any_db: Api) -> Api:
    """Searches are SQL that differs by database: each test runs on SQLite and on PostgreSQL."""
    return api_any_db


def test_events_are_searched_in_their_payload_case_insensitively(api: Api) -> None:
    plain, special = api.add_event(), api.add_event()
    with api.engine.begin() as conn:
        extra = {"payload": {"device": "Sensor-42_%"}, "message": {"broker": "local"}}
        conn.execute(update(t.asset_event).where(t.asset_event.c.id == special).values(extra=extra))
    found = lambda q: [e["id"] for e in api.ok("/api/v1/events", params={"q": q})["items"]]  # noqa: E731
    assert found("sensor-42") == [special]
    assert found("42_%") == [special]  # LIKE's wildcards are text here
    assert found("4_") == []
    assert found("api_orders") == [plain]  # the message is searched too
    assert api.get("/api/v1/events", params={"q": "x" * 201}).status_code == 422


def test_dead_letters_filter_by_reason_and_replay_a_filter(api: Api) -> None:
    bad_json = api.add_dead_letter()
    timeout = api.add_dead_letter()
    done = api.add_dead_letter()
    with api.engine.begin() as conn:
        d = t.dead_letter
        conn.execute(update(d).where(d.c.id == timeout).values(error="TimeoutError: apply_function took too long"))
        conn.execute(update(d).where(d.c.id == done).values(replayed_at=utcnow()))
    listed = lambda **q: [x["id"] for x in api.ok("/api/v1/dead-letters", params=q)["items"]]  # noqa: E731
    assert listed(error="timeouterror") == [timeout]
    assert listed(error="bad body") == [done, bad_json]
    r = api.post("/api/v1/dead-letters/replay", json={"error": "bad body"})
    assert r.status_code == 202 and r.json() == {"requested": 1}  # the replayed one is left alone
    with api.engine.connect() as conn:
        asked = set(
            conn.execute(select(t.dead_letter.c.id).where(t.dead_letter.c.replay_requested_at.is_not(None))).scalars()
        )
    assert asked == {bad_json}
    assert api.post("/api/v1/dead-letters/replay", json={"error": "bad body"}).json() == {"requested": 0}
    assert api.post("/api/v1/dead-letters/replay", json={}, token="read").status_code == 403


def test_the_failed_runs_of_a_filter_are_retried(api: Api) -> None:
    old = api.add_run(state="failed", tasks={"extract": "failed"}, queued_at=utcnow() - timedelta(hours=3))
    recent = api.add_run(state="failed", tasks={"extract": "failed"})
    other_dag = api.add_run(dag_id="manual", state="failed", tasks={"only": "failed"})
    fine = api.add_run(state="success", tasks={"extract": "success"})
    since = (utcnow() - timedelta(hours=1)).isoformat()
    r = api.post("/api/v1/runs/retry", json={"dag_id": "process_orders", "since": since})
    assert r.status_code == 200, r.text
    assert r.json()["retried"] == [{"run_id": recent, "state": "running", "retried": ["extract"]}]
    states = {x["run_id"]: x["state"] for x in api.ok("/api/v1/runs")["items"]}
    assert states == {old: "failed", recent: "running", other_dag: "failed", fine: "success"}
    assert [x["run_id"] for x in api.post("/api/v1/runs/retry", json={}).json()["retried"]] == [other_dag, old]
    r = api.post("/api/v1/runs/retry", json={"dag_id": "nope"})
    assert r.status_code == 404 and "process_orders" in r.json()["hint"]
