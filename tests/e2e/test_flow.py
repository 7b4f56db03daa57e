"""Flow control end to end: `herald standalone` (SQLite, PostgreSQL), local:// messages, and the runs
read back through the CLI and the API: order per key, skip, cancel_running, priority, throttle,
rate limit, debounce, cancel_on (across a restart too, and over the events a batch still gathers), and
the events windows and absences hold."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Herald
from tests.e2e.standalone_per_db import api, standalone

FLOW_DAGS = """
import json
import os
import time

from herald import DAG, Asset, AssetWatcher, Debounce, EventBatch, MessageQueueTrigger, task

MARKS = {marks!r}


def watched(name):
    return Asset(name, watchers=[AssetWatcher(name + "_local", MessageQueueTrigger("local://" + name))])


def wait_for_mark(name):
    while not os.path.exists(os.path.join(MARKS, name)):
        time.sleep(0.05)


@task
def note(triggering_asset_events):
    (events,) = triggering_asset_events.values()
    payload = events[-1].payload
    with open(os.path.join(MARKS, "pid-" + str(payload["n"])), "w") as fh:
        fh.write(str(os.getpid()))
    start = time.time()
    if payload.get("hold"):
        wait_for_mark("release-" + str(payload["n"]))
    time.sleep(payload.get("sleep", 0))
    return {{"n": payload["n"], "key": payload.get("device"), "start": start, "end": time.time(),
             "events": [e.payload["n"] for e in events]}}


readings = watched("readings")
with DAG("iot", schedule=[readings], key="device", max_active_runs_per_key=1):
    note()

commands = watched("commands")
with DAG("singleton", schedule=[commands], key="device", on_new_event="skip"):
    note()

builds = watched("builds")
with DAG("latest", schedule=[builds], key="branch", on_new_event="cancel_running"):
    note()

jobs = watched("jobs")
with DAG("urgent", schedule=[jobs], priority="p", max_active_runs=1):
    note()

pings = watched("pings")
with DAG("throttled", schedule=[pings], key="device", throttle=(2, 3)):
    note()

alerts = watched("alerts")
with DAG("limited", schedule=[alerts], key="device", rate_limit=(2, 3600)):
    note()

edits = watched("edits")
with DAG("quiet", schedule=[edits], key="doc", debounce=Debounce(1.0, max_wait=30)):
    note()

orders = watched("orders")
with DAG("orders", schedule=[orders], key="order", max_active_runs_per_key=1, cancel_on=watched("order_cancels")):
    note()

parcels = watched("parcels")
with DAG("parcels", schedule=[parcels], key="order", batch=EventBatch(max_events=3, max_wait=3600),
         cancel_on=watched("parcel_cancels")):
    note()


@task
def alert():
    return "alert"


with DAG("paired", schedule=(watched("left") & watched("right")).within(600, key="pair")):
    alert()

with DAG("sensor_silent", schedule=watched("beats").missing_for(600, key="device")):
    alert()
"""


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def herald(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    marks = tmp_path_factory.mktemp("marks")
    with standalone(request.param, tmp_path_factory, FLOW_DAGS.format(marks=str(marks)), {}) as h:
        h.marks = marks  # type: ignore[attr-defined]
        h.wait_for(lambda: len(h.cli_json("dags", "list")) == 11, what="the DAGs")
        yield h


def _marks(herald: Herald) -> Path:
    found: Path = herald.marks  # type: ignore[attr-defined]
    return found


def _results(herald: Herald, dag_id: str) -> list[dict[str, Any]]:
    """The task result of each successful run of `dag_id`, with its run."""
    out = []
    for run in herald.runs(dag_id, "success"):
        detail = herald.cli_json("runs", "show", run["run_id"])
        out.append({**detail["tasks"][0]["result"], "run": run})
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_runs_of_one_key_never_overlap_and_start_in_event_order(herald: Herald) -> None:
    # given three devices sending four readings each, interleaved, in one burst
    readings = [{"device": d, "n": f"{d}{i}", "sleep": 0.2} for i in range(4) for d in ("a", "b", "c")]
    herald.publish("readings", *readings)
    # then every reading makes a run
    herald.wait_runs(12, "iot", timeout=90)
    results = _results(herald, "iot")
    assert len(results) == 12
    for device in ("a", "b", "c"):
        mine = sorted((r for r in results if r["key"] == device), key=lambda r: r["start"])
        # a device's runs start in the order of its readings, each after the one before ended
        assert [r["n"] for r in mine] == [f"{device}{i}" for i in range(4)]
        assert all(b["start"] >= a["end"] for a, b in itertools.pairwise(mine)), mine
        assert {r["run"]["run_key"] for r in mine} == {device}
    # and different devices ran side by side
    spans = sorted((r["start"], r["end"]) for r in results)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans)), spans


def test_skip_makes_a_skipped_run_visible_while_the_key_runs(herald: Herald) -> None:
    marks, first, second = _marks(herald), uuid.uuid4().hex, uuid.uuid4().hex
    herald.publish("commands", {"device": "d", "n": first, "hold": True})
    herald.wait_for(lambda: (marks / f"pid-{first}").exists(), what="the first command's task to start")
    herald.publish("commands", {"device": "d", "n": second})
    skipped = herald.wait_for(lambda: herald.runs("singleton", "skipped"), what="the skipped run")
    assert [r["held_by"] for r in skipped] == ["key"] and skipped[0]["run_key"] == "d"
    # the CLI's table shows the rule, the API's run JSON has it
    code, table = herald.cli("runs", "list", "--dag", "singleton")
    skipped_row = next(line for line in table.splitlines() if "skipped" in line)
    assert code == 0 and "held" in table and "key" in skipped_row.split("skipped", 1)[1]
    status, page = api(herald, "/runs?dag_id=singleton&state=skipped")
    assert status == 200 and [r["held_by"] for r in page["items"]] == ["key"]
    (marks / f"release-{first}").touch()
    herald.wait_runs(1, "singleton")
    assert [r["n"] for r in _results(herald, "singleton")] == [first]


def test_cancel_running_stops_the_running_task_and_the_newest_event_runs(herald: Herald) -> None:
    marks, old, new = _marks(herald), uuid.uuid4().hex, uuid.uuid4().hex
    herald.publish("builds", {"branch": "main", "n": old, "hold": True})
    herald.wait_for(lambda: (marks / f"pid-{old}").exists(), what="the first build's task to start")
    pid = int((marks / f"pid-{old}").read_text())
    herald.publish("builds", {"branch": "main", "n": new})
    herald.wait_for(lambda: herald.runs("latest", "success"), what="the newest build's run")
    (cancelled,) = herald.runs("latest", "cancelled")
    (winner,) = herald.runs("latest", "success")
    assert cancelled["held_by"] == f"cancelled by run {winner['run_id']}"
    detail = herald.cli_json("runs", "show", cancelled["run_id"])
    assert detail["tasks"][0]["state"] == "skipped" and "cancelled by run" in detail["tasks"][0]["error"]
    herald.wait_for(lambda: not _alive(pid), timeout=30, what="the cancelled try's process to be stopped")


def test_priority_starts_the_highest_queued_run_first(herald: Herald) -> None:
    marks, blocker = _marks(herald), uuid.uuid4().hex
    herald.publish("jobs", {"n": blocker, "p": 0, "hold": True})
    herald.wait_for(lambda: (marks / f"pid-{blocker}").exists(), what="the blocking job to start")
    herald.publish("jobs", {"n": "p1", "p": 1}, {"n": "p5", "p": 5}, {"n": "p3", "p": 3})
    queued = herald.wait_for(lambda: len(herald.runs("urgent", "queued")) == 3, what="three queued jobs")
    assert queued
    assert {r["held_by"] for r in herald.runs("urgent", "queued")} == {"max_active_runs"}
    (marks / f"release-{blocker}").touch()
    herald.wait_runs(4, "urgent")
    order = [r["n"] for r in sorted(_results(herald, "urgent"), key=lambda r: r["start"])]
    assert order == [blocker, "p5", "p3", "p1"]


def test_throttle_holds_runs_beyond_the_period(herald: Herald) -> None:
    herald.publish("pings", *({"device": "t", "n": f"t{i}"} for i in range(4)))

    def held() -> list[dict[str, Any]]:
        return [r for r in herald.runs("throttled", "queued") if r["held_by"] == "throttle"]

    two = herald.wait_for(lambda: len(held()) == 2 and held(), what="two runs held by the throttle")
    assert all(r["held_until"] is not None for r in two)
    herald.wait_runs(4, "throttled", timeout=60)
    starts = sorted(datetime.fromisoformat(r["started_at"]) for r in herald.runs("throttled"))
    # two start at once; the next two only once the 3 s period allows
    assert (starts[2] - starts[0]).total_seconds() >= 3.0, starts


def test_rate_limit_skips_and_counts_runs_beyond_it(herald: Herald) -> None:
    herald.publish("alerts", *({"device": "r", "n": f"r{i}"} for i in range(4)))
    herald.wait_runs(2, "limited")
    skipped = herald.wait_for(lambda: len(herald.runs("limited", "skipped")) == 2 and herald.runs("limited", "skipped"))
    assert {r["held_by"] for r in skipped} == {"rate_limit"}
    # never silently dropped: the events are kept with their skipped runs, and counted in the metrics
    assert all(len(r["event_ids"]) == 1 for r in skipped)
    status, text = _metrics(herald)
    assert status == 200
    assert 'herald_dag_runs_held{dag_id="limited",held_by="rate_limit",state="skipped"} 2.0' in text


def test_debounce_makes_one_run_with_the_burst(herald: Herald) -> None:
    doc = uuid.uuid4().hex[:8]
    burst = [{"doc": doc, "n": f"{doc}-{i}"} for i in range(5)]
    herald.publish("edits", *burst)
    herald.wait_runs(1, "quiet", timeout=30)
    (result,) = _results(herald, "quiet")
    assert result["events"] == [e["n"] for e in burst]
    assert len(result["run"]["event_ids"]) == 5
    assert len(herald.runs("quiet")) == 1


def test_cancel_on_cancels_the_running_and_queued_runs_of_its_key(herald: Herald) -> None:
    marks, first, second, other = _marks(herald), uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    herald.publish("orders", {"order": "o1", "n": first, "hold": True})
    herald.wait_for(lambda: (marks / f"pid-{first}").exists(), what="the first order's task to start")
    pid = int((marks / f"pid-{first}").read_text())
    herald.publish("orders", {"order": "o1", "n": second}, {"order": "o2", "n": other})
    herald.wait_for(lambda: herald.runs("orders", "success"), what="the other order's run")
    herald.wait_for(lambda: herald.runs("orders", "queued"), what="the second o1 run, queued behind the first")
    herald.publish("order_cancels", {"order": "o1"})
    cancelled = herald.wait_for(
        lambda: len(herald.runs("orders", "cancelled")) == 2 and herald.runs("orders", "cancelled"),
        what="both o1 runs cancelled",
    )
    (event_id,) = {r["cancelled_by_event"] for r in cancelled}
    assert {r["held_by"] for r in cancelled} == {f"cancelled by event {event_id}"}
    assert {r["run_key"] for r in cancelled} == {"o1"}
    status, event = api(herald, f"/events/{event_id}")
    assert status == 200 and event["asset"] == "order_cancels"
    # the run page says what cancelled it: `runs show` (table and JSON) and the API
    ran = next(r for r in cancelled if r["started_at"] is not None)
    never = next(r for r in cancelled if r["started_at"] is None)
    detail = herald.cli_json("runs", "show", ran["run_id"])
    assert detail["cancelled_by_event"] == event_id
    assert detail["tasks"][0]["state"] == "skipped" and "cancelled by event" in detail["tasks"][0]["error"]
    assert herald.cli_json("runs", "show", never["run_id"])["tasks"] == []  # a queued run never starts
    code, table = herald.cli("runs", "show", ran["run_id"])
    assert code == 0 and "cancelled by event" in table and str(event_id) in table
    status, run = api(herald, f"/runs/{never['run_id']}")
    assert status == 200 and run["cancelled_by_event"] == event_id
    herald.wait_for(lambda: not _alive(pid), timeout=30, what="the cancelled try's process to be stopped")
    # the other key ran untouched
    assert [r["n"] for r in _results(herald, "orders")] == [other]


def test_windows_and_absences_show_the_events_they_hold(herald: Herald) -> None:
    herald.publish("left", {"pair": "p1", "n": "l1"})
    herald.publish("beats", {"device": "s1", "n": "b1"})

    def held() -> dict[str, dict[str, Any]]:
        found = herald.cli_json("runs", "list", "--held")
        return {e["held_by"]: e for e in found if e["held_by"] in ("window", "missing_for")}

    found = herald.wait_for(lambda: len(held()) == 2 and held(), what="the window and the absence holding")
    window, absence = found["window"], found["missing_for"]
    assert (window["dag_id"], window["key"], window["asset"]) == ("paired", "p1", "left")
    assert (absence["dag_id"], absence["key"], absence["asset"]) == ("sensor_silent", "s1", "beats")
    assert window["held_until"] and absence["held_until"]
    # the table says so, and the runs listing points at it
    code, table = herald.cli("runs", "list", "--held")
    assert code == 0 and "window" in table and "missing_for" in table
    code, table = herald.cli("runs", "list", "--dag", "paired")
    assert code == 0 and "held by a window or an absence" in table and "herald runs list --held" in table
    status, page = api(herald, "/held_events?dag_id=paired")
    assert status == 200 and [e["held_by"] for e in page["items"]] == ["window"]
    status, text = _metrics(herald)
    assert status == 200 and 'herald_events_held{dag_id="paired",held_by="window"} 1.0' in text
    assert herald.runs("paired") == [] and herald.runs("sensor_silent") == []


def test_cancel_on_holds_across_a_restart(herald: Herald) -> None:
    # a run of o7 holds its task; another waits behind it; Herald dies; the cancel comes while it is down
    marks, first, second = _marks(herald), uuid.uuid4().hex, uuid.uuid4().hex
    herald.publish("orders", {"order": "o7", "n": first, "hold": True})
    herald.wait_for(lambda: (marks / f"pid-{first}").exists(), what="the first o7 task to start")
    herald.publish("orders", {"order": "o7", "n": second, "hold": True})

    def queued_second() -> str | None:
        return next((r["run_id"] for r in herald.runs("orders", "queued") if r["run_key"] == "o7"), None)

    run_id = herald.wait_for(queued_second, what="the second o7 run, queued")
    herald.kill()
    herald.publish("order_cancels", {"order": "o7"})
    herald.start()
    try:

        def cancelled() -> dict[str, Any] | None:
            found: dict[str, Any] = herald.cli_json("runs", "show", run_id)
            return found if found["state"] == "cancelled" else None

        done = herald.wait_for(cancelled, what="the queued o7 run cancelled after the restart")
        status, event = api(herald, f"/events/{done['cancelled_by_event']}")
        assert status == 200 and event["asset"] == "order_cancels"
        assert done["held_by"] == f"cancelled by event {done['cancelled_by_event']}"
    finally:
        for name in (first, second):
            (marks / f"release-{name}").touch()  # a task left by the killed process ends


def test_cancel_on_cancels_the_events_a_batch_still_gathers_across_a_kill(herald: Herald) -> None:
    # p1 and p2 each gather events toward a batch of 3; Herald dies; p1's cancel comes while it is down
    names = {n: uuid.uuid4().hex for n in ("a", "b", "c", "d", "e", "f", "g", "h")}
    herald.publish("parcels", *({"order": o, "n": names[n]} for o, n in (("p1", "a"), ("p1", "b"), ("p2", "c"))))
    herald.wait_for(
        lambda: len(herald.cli_json("events", "list", "--asset", "parcels")) == 3, what="the parcels stored"
    )

    herald.kill()
    herald.publish("parcel_cancels", {"order": "p1"})
    herald.start()

    def cancelled() -> list[dict[str, Any]] | None:
        found = herald.cli_json("runs", "list", "--held", "--dag", "parcels")
        return found if len(found) == 2 else None

    held = herald.wait_for(cancelled, what="p1's gathered events cancelled")
    events = {e["id"]: e for e in herald.cli_json("events", "list", "--asset", "parcels")}
    (cancel,) = herald.cli_json("events", "list", "--asset", "parcel_cancels")
    assert {e["held_by"] for e in held} == {f"cancelled by event {cancel['id']}"}
    assert {e["key"] for e in held} == {"p1"} and {e["dag_id"] for e in held} == {"parcels"}
    assert {events[e["event_id"]]["extra"]["payload"]["n"] for e in held} == {names["a"], names["b"]}
    # the table and the API say so too
    code, table = herald.cli("runs", "list", "--held", "--dag", "parcels")
    assert code == 0 and "cancelled by event" in table
    status, page = api(herald, "/held_events?dag_id=parcels")
    assert status == 200 and [e["event_id"] for e in page["items"]] == [e["event_id"] for e in held]
    # a kill -9 now keeps the decision: after a restart the cancelled events still make no run
    herald.kill()
    herald.start()
    # p1's events after the cancel gather and run as usual; p2's batch was never touched
    herald.publish("parcels", *({"order": "p1", "n": names[n]} for n in ("d", "e", "f")))
    herald.publish("parcels", *({"order": "p2", "n": names[n]} for n in ("g", "h")))
    herald.wait_runs(2, "parcels", timeout=60)
    ran = sorted(sorted(r["events"]) for r in _results(herald, "parcels"))
    assert ran == sorted([sorted(names[n] for n in "def"), sorted(names[n] for n in "cgh")])
    assert herald.runs("parcels", "cancelled") == []
    assert len(herald.cli_json("runs", "list", "--held", "--dag", "parcels")) == 2


def _metrics(herald: Herald) -> tuple[int, str]:
    import urllib.request

    from tests.e2e.standalone_per_db import token

    req = urllib.request.Request(
        f"http://127.0.0.1:{herald.port}/metrics", headers={"Authorization": f"Bearer {token(herald)}"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read().decode()
