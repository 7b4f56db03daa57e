"""The API's history: each task's tries with why they ended (GET /runs/{id}), a watcher's lag and errors over time."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from herald.store import tables as t
from herald.store import try_history, watcher_samples
from herald.store.states import TryEnd, WatcherState
from herald.store.types import utcnow
from tests.api.conftest import Api


def test_a_run_lists_each_tasks_tries_with_why_they_ended(api: Api) -> None:
    run_id = api.add_run(state="failed", tasks={"extract": "failed", "load": "upstream_failed"})
    with api.engine.begin() as conn:
        rows = {
            r.task_id: int(r.id) for r in conn.execute(select(t.task_instance.c.task_id, t.task_instance.c.id)).all()
        }
        try_history.record_decided(conn, [rows["extract"]], TryEnd.TIMED_OUT)
        try_history.record_decided(conn, [rows["load"]], TryEnd.UPSTREAM_FAILED)
    tasks = {x["task_id"]: x for x in api.ok(f"/api/v1/runs/{run_id}")["tasks"]}
    (timed_out,) = tasks["extract"]["tries"]
    assert timed_out["reason"] == "timed_out" and timed_out["try_number"] == 1 and timed_out["error"] == "boom"
    assert timed_out["duration_seconds"] == 0.3
    (upstream,) = tasks["load"]["tries"]
    assert (upstream["reason"], upstream["try_number"], upstream["started_at"]) == ("upstream_failed", 0, None)
    assert "tries" in api.ok(f"/api/v1/runs/{run_id}/tasks")["items"][0]


def test_a_watchers_history_has_its_samples_oldest_first_and_its_errors_with_times(api: Api) -> None:
    with api.engine.begin() as conn:
        wid = int(conn.execute(select(t.watcher.c.id)).scalar_one())
        conn.execute(update(t.watcher).values(lease_owner="standalone", lag=4, received=9))
    now = utcnow()
    watcher_samples.take(api.engine, "standalone", now - timedelta(seconds=30))
    with api.engine.begin() as conn:
        conn.execute(
            update(t.watcher).values(state=WatcherState.RECONNECTING, last_error="ConnectionError: refused", lag=None)
        )
    watcher_samples.take(api.engine, "standalone", now - timedelta(seconds=15))
    found = api.ok(f"/api/v1/watchers/{wid}/history", params={"minutes": 5})
    assert [(s["lag"], s["received"], s["error"]) for s in found["samples"]] == [
        (4, 9, None),
        (None, 9, "ConnectionError: refused"),
    ]
    assert found["interval_seconds"] == 15.0
    (spell,) = found["errors"]
    assert spell["error"] == "ConnectionError: refused" and spell["state"] == "reconnecting"
    assert api.get("/api/v1/watchers/987654/history").status_code == 404
    assert api.get(f"/api/v1/watchers/{wid}/history", params={"minutes": 0}).status_code == 422
    assert api.get(f"/api/v1/watchers/{wid}/history", token=None).status_code == 401
