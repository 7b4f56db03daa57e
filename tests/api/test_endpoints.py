"""Each endpoint's answer, pagination, idempotency, retries and replays."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

from sqlalchemy import select

from herald import notify
from herald.store import tables as t
from herald.store.types import utcnow
from tests.api.conftest import Api

# -- DAGs ------------------------------------------------------------------------------------


def test_dags_list_their_graph_trigger_and_last_runs(api: Api) -> None:
    api.add_run(tasks={"extract": "success"})
    page = api.ok("/api/v1/dags")
    dags = {d["dag_id"]: d for d in page["items"]}
    assert list(dags) == ["manual", "process_orders"] and page["next_offset"] is None
    orders = dags["process_orders"]
    assert {x["task_id"]: x["upstream"] for x in orders["tasks"]} == {
        "extract": [],
        "load": ["extract"],
        "report": ["load"],
    }
    assert orders["next_trigger"] == {"kind": "asset", "text": "orders", "next_at": None}
    assert orders["assets"] == ["orders"] and len(orders["last_runs"]) == 1
    assert dags["manual"]["next_trigger"]["kind"] == "manual"
    assert api.ok("/api/v1/dags/manual")["description"] == "run by hand"


def test_an_unknown_dag_is_404_naming_the_known_ones(api: Api) -> None:
    r = api.get("/api/v1/dags/nope")
    assert r.status_code == 404
    assert r.json()["message"] == "no DAG 'nope'" and "manual, process_orders" in r.json()["hint"]


def test_import_errors_are_listed(api: Api) -> None:
    with api.engine.begin() as conn:
        conn.execute(t.import_error.insert().values(fileloc="/x/bad.py", error="SyntaxError", timestamp=utcnow()))
    items = api.ok("/api/v1/import-errors")["items"]
    assert items == [{"fileloc": "/x/bad.py", "error": "SyntaxError", "timestamp": items[0]["timestamp"]}]


def test_trigger_with_conf_queues_a_run_and_wakes_the_scheduler(api: Api) -> None:
    r = api.post("/api/v1/dags/manual/runs", json={"conf": {"day": "2026-11-21"}})
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["state"] == "queued" and run["conf"] == {"day": "2026-11-21"} and run["run_type"] == "manual"
    assert api.wakes
    assert api.ok(f"/api/v1/runs/{run['run_id']}")["dag_id"] == "manual"


def test_trigger_refuses_a_conf_that_is_not_an_object(api: Api) -> None:
    r = api.post("/api/v1/dags/manual/runs", json={"conf": [1, 2]})
    assert r.status_code == 422
    assert "conf" in r.json()["message"]
    assert api.post("/api/v1/dags/nope/runs", json={}).status_code == 404


def test_pause_and_unpause(api: Api) -> None:
    assert api.post("/api/v1/dags/process_orders/pause").json()["is_paused"] is True
    assert api.ok("/api/v1/dags/process_orders")["is_paused"] is True
    assert api.post("/api/v1/dags/process_orders/unpause").json()["is_paused"] is False
    assert api.post("/api/v1/dags/nope/pause").status_code == 404


# -- runs and tasks --------------------------------------------------------------------------


def test_runs_filter_by_dag_state_and_time(api: Api) -> None:
    old = utcnow() - timedelta(hours=2)
    a = api.add_run(state="success", queued_at=old)
    b = api.add_run(state="failed", tasks={"extract": "failed"})
    c = api.add_run(dag_id="manual", state="success")
    ids = lambda **q: [r["run_id"] for r in api.ok("/api/v1/runs", params=q)["items"]]  # noqa: E731
    assert ids() == [c, b, a]
    assert ids(dag_id="process_orders") == [b, a]
    assert ids(state="failed") == [b]
    since = (utcnow() - timedelta(hours=1)).isoformat()
    assert ids(since=since) == [c, b]
    assert ids(until=since) == [a]
    assert api.get("/api/v1/runs", params={"state": "bogus"}).status_code == 422


def test_a_run_shows_tasks_logs_and_the_events_that_caused_it(api: Api) -> None:
    e1, e2 = api.add_event(), api.add_event()
    run_id = api.add_run(tasks={"extract": "success", "load": "failed", "report": "upstream_failed"}, events=[e1, e2])
    run = api.ok(f"/api/v1/runs/{run_id}")
    assert run["event_ids"] == [e1, e2]
    assert [e["id"] for e in run["events"]] == [e1, e2]
    assert run["events"][0]["runs"] == [{"run_id": run_id, "dag_id": "process_orders", "state": "success"}]
    assert run["events"][0]["extra"]["message"]["broker"] == "local"
    assert [x["task_id"] for x in run["tasks"]] == ["extract", "load", "report"]
    tasks = api.ok(f"/api/v1/runs/{run_id}/tasks", params={"limit": 2})
    assert [x["task_id"] for x in tasks["items"]] == ["extract", "load"] and tasks["next_offset"] == 2
    log = api.ok(f"/api/v1/runs/{run_id}/tasks/load/log")
    assert log["log"] == "log of load\n" and log["error"] == "boom" and log["state"] == "failed"
    r = api.get(f"/api/v1/runs/{run_id}/tasks/nope/log")
    assert r.status_code == 404 and "extract, load, report" in r.json()["hint"]
    assert api.get("/api/v1/runs/nope").status_code == 404
    assert api.get("/api/v1/runs/nope/tasks/x/log").status_code == 404


def test_retry_a_failed_run_reruns_the_failed_tasks_and_what_they_held_back(api: Api) -> None:
    run_id = api.add_run(state="failed", tasks={"extract": "success", "load": "failed", "report": "upstream_failed"})
    r = api.post(f"/api/v1/runs/{run_id}/retry")
    assert r.status_code == 200, r.text
    assert r.json() == {"run_id": run_id, "state": "running", "retried": ["load"]}
    run = api.ok(f"/api/v1/runs/{run_id}")
    tasks = {x["task_id"]: x for x in run["tasks"]}
    assert run["state"] == "running" and run["ended_at"] is None
    assert tasks["load"]["state"] == "scheduled" and tasks["load"]["max_tries"] == 2
    assert tasks["report"]["state"] == "none" and tasks["extract"]["state"] == "success"
    # "scheduled" is queued by the next scheduler pass, which the retry wakes
    assert api.wakes
    again = api.post(f"/api/v1/runs/{run_id}/retry")
    assert again.status_code == 409 and "only a failed run" in again.json()["message"]


def test_retry_one_failed_task(api: Api) -> None:
    run_id = api.add_run(state="failed", tasks={"extract": "failed", "load": "upstream_failed"})
    assert api.post(f"/api/v1/runs/{run_id}/tasks/load/retry").status_code == 409
    assert api.post(f"/api/v1/runs/{run_id}/tasks/nope/retry").status_code == 404
    r = api.post(f"/api/v1/runs/{run_id}/tasks/extract/retry")
    assert r.status_code == 200 and r.json()["retried"] == ["extract"]
    tasks = {x["task_id"]: x["state"] for x in api.ok(f"/api/v1/runs/{run_id}")["tasks"]}
    assert tasks == {"extract": "scheduled", "load": "none"}


def test_a_failed_run_without_tasks_is_queued_again(api: Api) -> None:
    run_id = api.add_run(state="failed")
    assert api.post(f"/api/v1/runs/{run_id}/retry").json() == {"run_id": run_id, "state": "queued", "retried": []}


# -- assets and events -----------------------------------------------------------------------


def test_assets_and_one_asset(api: Api) -> None:
    items = api.ok("/api/v1/assets")["items"]
    assert [(a["name"], a["consumers"]) for a in items] == [("audits", []), ("orders", ["process_orders"])]
    api.add_event()
    one = api.ok("/api/v1/assets/orders")
    assert one["watchers"] == ["orders_local"] and one["event_count"] == 1 and one["last_event_at"]
    assert api.get("/api/v1/assets/nope").status_code == 404


def test_event_counts_over_time(api: Api) -> None:
    api.add_event(when=utcnow() - timedelta(minutes=50))
    api.add_event()
    api.add_event()
    counts = api.ok("/api/v1/assets/orders/event-counts", params={"minutes": 60, "buckets": 6})
    assert len(counts) == 6 and [c["count"] for c in counts] == [1, 0, 0, 0, 0, 2]
    assert api.get("/api/v1/assets/nope/event-counts").status_code == 404


def test_the_webhook_records_an_event_and_queues_it_for_its_dags(api: Api) -> None:
    r = api.post("/api/v1/assets/orders/events", json={"extra": {"order_id": 7}})
    assert r.status_code == 201, r.text
    event = r.json()
    assert event["asset"] == "orders" and event["source"] == "api" and event["extra"] == {"order_id": 7}
    with api.engine.connect() as conn:
        queued = conn.execute(select(t.event_queue.c.dag_id).where(t.event_queue.c.event_id == event["id"])).all()
    assert [q.dag_id for q in queued] == ["process_orders"]
    assert api.wakes
    r = api.post("/api/v1/assets/nope/events", json={"extra": {}})
    assert r.status_code == 404 and "audits, orders" in r.json()["hint"]
    assert api.post("/api/v1/assets/orders/events", json={"extra": "text"}).status_code == 422


def test_the_same_idempotency_key_twice_makes_one_event(api: Api) -> None:
    key = {"Idempotency-Key": "order-7-created"}
    first = api.post("/api/v1/assets/orders/events", json={"extra": {"n": 1}}, headers=key)
    second = api.post("/api/v1/assets/orders/events", json={"extra": {"n": 1}}, headers=key)
    assert first.status_code == 201 and second.status_code == 200
    assert second.headers["idempotent-replayed"] == "true"
    assert first.json()["id"] == second.json()["id"]
    other = api.post("/api/v1/assets/orders/events", json={"extra": {"n": 1}}, headers={"Idempotency-Key": "k2"})
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert len(api.ok("/api/v1/events")["items"]) == 2
    with api.engine.connect() as conn:
        assert len(conn.execute(select(t.event_queue)).all()) == 2
    clash = api.post("/api/v1/assets/audits/events", json={"extra": {}}, headers=key)
    assert clash.status_code == 409 and "another asset" in clash.json()["message"]


def test_events_filter_by_asset_source_and_time(api: Api) -> None:
    old = api.add_event(when=utcnow() - timedelta(hours=3))
    watched = api.add_event()
    posted = api.post("/api/v1/assets/audits/events", json={"extra": {}}).json()["id"]
    ids = lambda **q: [e["id"] for e in api.ok("/api/v1/events", params=q)["items"]]  # noqa: E731
    assert ids() == [posted, watched, old]
    assert ids(asset="orders") == [watched, old]
    assert ids(source="api") == [posted]
    assert ids(source="watcher:") == [watched, old]
    assert ids(since=(utcnow() - timedelta(hours=1)).isoformat()) == [posted, watched]
    assert ids(until=(utcnow() - timedelta(hours=1)).isoformat()) == [old]
    one = api.ok(f"/api/v1/events/{watched}")
    assert one["id"] == watched and one["runs"] == []
    # Airflow's source_* belong to events tasks emit: a watcher's and the API's leave them None
    for event in api.ok("/api/v1/events")["items"]:
        assert [event[k] for k in ("source_dag_id", "source_task_id", "source_run_id", "source_map_index")] == [
            None
        ] * 4
        assert event["source_aliases"] == []
    assert api.get("/api/v1/events/999999").status_code == 404


def test_replay_an_event_makes_a_new_run_consuming_it(api: Api) -> None:
    event_id = api.add_event()
    first = api.add_run(events=[event_id])
    r = api.post(f"/api/v1/events/{event_id}/replay")
    assert r.status_code == 201, r.text
    [run] = r.json()["runs"]
    assert run["dag_id"] == "process_orders" and run["state"] == "queued"
    detail = api.ok(f"/api/v1/runs/{run['run_id']}")
    assert detail["event_ids"] == [event_id] and detail["run_type"] == "replay"
    assert [x["run_id"] for x in api.ok(f"/api/v1/events/{event_id}")["runs"]] == [first, run["run_id"]]
    assert api.wakes
    chosen = api.post(f"/api/v1/events/{event_id}/replay", json={"dag_ids": ["manual"]})
    assert chosen.json()["runs"][0]["dag_id"] == "manual"
    lonely = api.add_event("audits")
    r = api.post(f"/api/v1/events/{lonely}/replay")
    assert r.status_code == 409 and "dag_ids" in r.json()["hint"]
    assert api.post("/api/v1/events/424242/replay").status_code == 404
    assert api.post(f"/api/v1/events/{event_id}/replay", json={"dag_ids": ["nope"]}).status_code == 404


# -- watchers and dead letters ---------------------------------------------------------------


def test_watchers_show_state_and_counters(api: Api) -> None:
    api.add_dead_letter()
    [w] = api.ok("/api/v1/watchers")["items"]
    assert w["asset"] == "orders" and w["name"] == "orders_local" and w["url"] == "local://api_orders"
    assert w["dead_lettered"] == 1


def test_a_watcher_is_paused_and_resumed_as_from_the_cli(api: Api) -> None:
    [w] = api.ok("/api/v1/watchers")["items"]
    assert api.post(f"/api/v1/watchers/{w['id']}/pause", token="read").status_code == 403
    r = api.post(f"/api/v1/watchers/{w['id']}/pause")
    assert r.status_code == 200, r.text
    assert r.json() == {"id": w["id"], "asset": "orders", "name": "orders_local", "state": "paused", "sharing": []}
    assert api.ok("/api/v1/watchers")["items"][0]["state"] == "paused"
    again = api.post(f"/api/v1/watchers/{w['id']}/pause")
    assert again.status_code == 409 and "paused already" in again.json()["message"]
    assert api.post(f"/api/v1/watchers/{w['id']}/resume").json()["state"] == "starting"
    assert api.post(f"/api/v1/watchers/{w['id']}/resume").status_code == 409
    assert api.post("/api/v1/watchers/9999/pause").status_code == 404


def test_triggerers_show_their_heartbeat_and_the_watchers_they_hold_and_read(api: Api) -> None:
    from herald.store import triggerers, watchers
    from herald.store.triggerers import Identity

    assert api.ok("/api/v1/triggerers") == []
    with api.engine.connect() as conn:
        wid = int(conn.execute(select(t.watcher.c.id)).scalar_one())
    watchers.claim_leases(api.engine, "triggerer:h:1", {"k": [wid]}, 30)
    triggerers.beat(api.engine, Identity("triggerer:h:1", "h", 1, utcnow()), [wid], 12, [wid], 30)
    triggerers.beat(api.engine, Identity("triggerer:h:2", "h", 2, utcnow()), [wid], 3, [], 30)
    holder, other = api.ok("/api/v1/triggerers")
    assert (holder["name"], holder["alive"], holder["received"]) == ("triggerer:h:1", True, 12)
    assert holder["leases"] == holder["consuming"] == ["orders/orders_local"]
    assert (other["leases"], other["consuming"]) == ([], ["orders/orders_local"])  # a shared consumer


def test_dead_letters_and_their_replay_request(api: Api) -> None:
    first = api.add_dead_letter()
    second = api.add_dead_letter(b"\xff\xfe")
    items = api.ok("/api/v1/dead-letters")["items"]
    assert [d["id"] for d in items] == [second, first]
    assert items[0]["body_encoding"] == "base64" and items[1]["body"] == "not json {"
    assert items[1]["error"] == "ValueError: bad body" and items[1]["replay_requested_at"] is None
    assert api.ok(f"/api/v1/dead-letters/{first}")["id"] == first
    assert api.get("/api/v1/dead-letters/9999").status_code == 404
    watcher_id = items[0]["watcher_id"]
    assert len(api.ok("/api/v1/dead-letters", params={"watcher_id": watcher_id})["items"]) == 2
    assert api.ok("/api/v1/dead-letters", params={"watcher_id": watcher_id + 1})["items"] == []
    r = api.post(f"/api/v1/dead-letters/{first}/replay")
    assert r.status_code == 202, r.text
    assert r.json()["replay_requested_at"] is not None and r.json()["replayed_at"] is None
    with api.engine.begin() as conn:
        conn.execute(t.dead_letter.update().where(t.dead_letter.c.id == first).values(replayed_at=utcnow()))
    assert api.post(f"/api/v1/dead-letters/{first}/replay").status_code == 409
    assert api.post("/api/v1/dead-letters/9999/replay").status_code == 404


def test_on_sqlite_a_replay_or_a_pause_asked_through_the_api_wakes_the_triggerers(api: Api) -> None:
    # Where Herald's triggerers listen for wake-ups on this database (a Unix datagram socket).
    path = notify.socket_path(api.engine.url.render_as_string(hide_password=False))
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as triggerers:
        triggerers.bind(path)
        triggerers.settimeout(30)
        try:
            letter = api.add_dead_letter()
            assert api.post(f"/api/v1/dead-letters/{letter}/replay").status_code == 202
            assert triggerers.recv(512) == notify.REPLAY.encode()
            watcher_id = api.ok("/api/v1/watchers")["items"][0]["id"]
            assert api.post(f"/api/v1/watchers/{watcher_id}/pause").status_code == 200
            assert triggerers.recv(512) == notify.WATCHERS.encode()
        finally:
            os.unlink(path)


# -- pagination ------------------------------------------------------------------------------


def test_every_list_pages_with_limit_and_offset(api: Api) -> None:
    events = [api.add_event() for _ in range(5)]
    for e in events:
        api.add_run(events=[e])
    api.add_dead_letter()
    api.add_dead_letter()
    for path, total in [
        ("/api/v1/events", 5),
        ("/api/v1/runs", 5),
        ("/api/v1/dags", 2),
        ("/api/v1/assets", 2),
        ("/api/v1/dead-letters", 2),
        ("/api/v1/watchers", 1),
    ]:
        seen: list[object] = []
        offset: int | None = 0
        pages = 0
        while offset is not None:
            page = api.ok(path, params={"limit": 2, "offset": offset})
            assert page["limit"] == 2 and page["offset"] == offset and len(page["items"]) <= 2
            seen += [repr(x) for x in page["items"]]
            offset = page["next_offset"]
            pages += 1
        assert len(seen) == total == len(set(seen)), path
        assert pages == (total + 1) // 2, path
    bad = api.get("/api/v1/events", params={"limit": 5000})
    assert bad.status_code == 422 and "limit" in bad.json()["message"]
    assert api.get("/api/v1/events", params={"offset": -1}).status_code == 422


# -- metrics ---------------------------------------------------------------------------------


def test_metrics_count_watchers_runs_dead_letters_lag_and_latency(api: Api) -> None:
    event = api.add_event(when=utcnow() - timedelta(milliseconds=30))
    api.add_run(events=[event], tasks={"extract": "success"})
    api.add_run(state="failed", tasks={"extract": "failed"})
    api.add_dead_letter()
    api.post("/api/v1/assets/orders/events", json={"extra": {}})
    text = api.get("/metrics").text
    assert 'herald_watcher_dead_lettered_total{asset="orders",watcher="orders_local"} 1.0' in text
    assert 'herald_dag_runs{dag_id="process_orders",state="failed"} 1.0' in text
    assert 'herald_dag_runs{dag_id="process_orders",state="success"} 1.0' in text
    assert 'herald_dead_letters{status="stored"} 1.0' in text
    assert 'herald_event_queue_events{dag_id="process_orders"} 1.0' in text
    assert "herald_event_queue_oldest_seconds" in text
    assert "herald_event_to_run_seconds_count 1.0" in text
    assert "herald_event_to_task_start_seconds_count 1.0" in text


def test_the_main_flow_on_sqlite_and_postgresql(api_any_db: Api) -> None:
    api = api_any_db
    key = {"Idempotency-Key": "same"}
    first = api.post("/api/v1/assets/orders/events", json={"extra": {"n": 1}}, headers=key).json()
    assert api.post("/api/v1/assets/orders/events", json={"extra": {"n": 1}}, headers=key).json()["id"] == first["id"]
    run_id = api.add_run(state="failed", tasks={"extract": "failed", "load": "upstream_failed"}, events=[first["id"]])
    assert api.post(f"/api/v1/runs/{run_id}/retry").json()["retried"] == ["extract"]
    replay = api.post(f"/api/v1/events/{first['id']}/replay").json()
    assert len(api.ok(f"/api/v1/events/{first['id']}")["runs"]) == 2 and replay["runs"]
    assert len(api.ok("/api/v1/dags")["items"]) == 2
    assert api.ok("/api/v1/runs", params={"limit": 1})["next_offset"] == 1
    assert "herald_dag_runs" in api.get("/metrics").text


def test_an_event_a_task_emitted_through_an_alias_shows_its_source(api: Api) -> None:
    from herald.store.aliases import TaskEvent, emit_task_events
    from herald.store.types import utcnow

    with api.engine.begin() as conn:
        made = emit_task_events(
            conn,
            [
                TaskEvent(
                    asset={"name": "fresh", "uri": "s3://b/fresh", "group": "asset", "extra": {}},
                    extra={"rows": 2},
                    dag_id="producer",
                    task_id="emit",
                    run_id="manual__1",
                    aliases=(("out", "asset"),),
                    dedupe_key="manual__1#alias0",
                )
            ],
            lambda asset_id, asset, aliases: [],
            utcnow(),
        )
    assert made.events == 1 and set(made.new_assets) == {"fresh"} and made.resolved == {"out": {"fresh"}}
    (event,) = api.ok("/api/v1/events", params={"asset": "fresh"})["items"]
    assert (event["source_dag_id"], event["source_task_id"], event["source_run_id"]) == (
        "producer",
        "emit",
        "manual__1",
    )
    assert event["source_map_index"] == -1 and event["source_aliases"] == [{"name": "out", "group": "asset"}]
    assert event["extra"] == {"rows": 2} and event["source"] == "task:producer.emit"
