"""Retention with `herald standalone` running (SQLite and PostgreSQL): `herald db clean` and
HERALD_RETENTION delete old finished runs and the events they consumed while runs keep being
made, and never a run that has not finished, its event, or an event a waiting DAG still needs."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from tests.e2e.conftest import Herald

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

DAG = """
import os, time
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

jobs = Asset("jobs", watchers=[AssetWatcher("jobs", MessageQueueTrigger("local://jobs"))])
slow = Asset("slow", watchers=[AssetWatcher("slow", MessageQueueTrigger("local://slow"))])
a = Asset("a", watchers=[AssetWatcher("a", MessageQueueTrigger("local://a"))])
b = Asset("b", watchers=[AssetWatcher("b", MessageQueueTrigger("local://b"))])
HOME = os.environ["HERALD_HOME"]


def note(line):
    with open(os.path.join(HOME, "done.txt"), "a") as fh:
        fh.write(line + "\\n")


@dag(schedule=[jobs])
def quick():
    @task
    def work(triggering_asset_events):
        note(f"quick {triggering_asset_events[jobs][0].extra['payload']['n']}")

    work()


@dag(schedule=[slow])
def held():
    @task
    def wait(triggering_asset_events):
        # Runs until the test lets it end: its run stays unfinished, older than the cut-off.
        while not os.path.exists(os.path.join(HOME, "release")):
            time.sleep(0.05)
        note(f"held {len(triggering_asset_events[slow])}")

    wait()


@dag(schedule=(a & b))
def both():
    @task
    def join(triggering_asset_events):
        note(f"both {len(triggering_asset_events[a])} {len(triggering_asset_events[b])}")

    join()


quick()
held()
both()
"""


def _done(herald: Herald) -> list[str]:
    path = herald.home / "done.txt"
    return path.read_text().splitlines() if path.exists() else []


def _quick_done(herald: Herald) -> Counter[int]:
    return Counter(int(line.split()[1]) for line in _done(herald) if line.startswith("quick "))


def _clean(herald: Herald, *args: str) -> dict[str, Any]:
    rows = herald.cli_json("db", "clean", "--older-than", "1s", *args)
    return {r["kind"]: r.get("deleted", r.get("would delete")) for r in rows}


def _held_running(herald: Herald) -> dict[str, Any] | None:
    runs = [r for r in herald.runs("held") if r["state"] == "running"]
    return runs[0] if runs else None


def _publish_jobs(herald: Herald, numbers: range) -> threading.Thread:
    """Publish one message at a time from another thread, as a producer does while Herald runs."""

    def send() -> None:
        for n in numbers:
            herald.publish("jobs", {"n": n})

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def _given_an_unfinished_run_and_a_waiting_condition(herald: Herald) -> dict[str, Any]:
    herald.write_dag("retention", DAG)
    # a filter naming a DAG not loaded yet is an error: wait for the file's DAGs first
    herald.wait_for(lambda: "held" in {d["dag_id"] for d in herald.cli_json("dags", "list")}, what="the DAGs")
    herald.publish("slow", "x")
    herald.publish("a", "half of a & b")
    held = herald.wait_for(lambda: _held_running(herald), what="the held run running")
    assert len(held["event_ids"]) == 1
    return held


def _then_what_was_needed_is_still_there(herald: Herald, held: dict[str, Any]) -> None:
    # The run that has not finished keeps its event; the half-satisfied `a & b` keeps its event.
    shown = herald.cli_json("runs", "show", held["run_id"])
    assert shown["state"] == "running" and shown["event_ids"] == held["event_ids"]
    assert [e["id"] for e in herald.cli_json("events", "list", "--asset", "slow")] == held["event_ids"]
    assert len(herald.cli_json("events", "list", "--asset", "a")) == 1
    herald.publish("b", "the other half")
    herald.wait_for(lambda: "both 1 1" in _done(herald), what="the a & b run with the old event of a")
    (herald.home / "release").touch()
    herald.wait_for(lambda: "held 1" in _done(herald), what="the held run's task ending")


def test_db_clean_deletes_only_what_it_may_while_herald_makes_runs(herald: Herald) -> None:
    herald.start()
    held = _given_an_unfinished_run_and_a_waiting_condition(herald)
    _publish_jobs(herald, range(5)).join()
    herald.wait_for(lambda: len(_quick_done(herald)) == 5, what="5 quick runs done")
    herald.wait_runs(5, "quick")

    # A dry run counts the 5 finished runs (1 try each) and their 5 events, and deletes nothing.
    planned = herald.wait_for(lambda: (c := _clean(herald, "--dry-run"))["runs"] == 5 and c, what="5 old runs")
    # (the watchers' health samples older than a second are counted too: how many depends on timing)
    assert {k: n for k, n in planned.items() if k != "watcher_samples"} == {
        "runs": 5,
        "tries": 5,
        "events": 5,
        "dead_letters": 0,
    }
    assert len(herald.runs("quick")) == 5

    # The clean runs while messages keep coming: the new runs are made and succeed.
    producer = _publish_jobs(herald, range(5, 45))
    deleted = _clean(herald)
    producer.join()
    assert deleted["runs"] >= 5 and deleted["events"] >= 5 and deleted["tries"] == deleted["runs"], deleted
    herald.wait_for(lambda: len(_quick_done(herald)) == 45, what="45 quick runs done", timeout=90)
    assert set(_quick_done(herald).values()) == {1}
    remaining = herald.runs("quick")
    assert all(r["state"] == "success" for r in remaining)
    assert len(remaining) == 45 - deleted["runs"]
    _then_what_was_needed_is_still_there(herald, held)


def test_scheduled_retention_keeps_cleaning_while_runs_are_made(herald: Herald) -> None:
    herald.start({"HERALD_RETENTION": "1s", "HERALD_RETENTION_INTERVAL": "0.2"})
    held = _given_an_unfinished_run_and_a_waiting_condition(herald)
    _publish_jobs(herald, range(40)).join()
    herald.wait_for(lambda: len(_quick_done(herald)) == 40, what="40 quick runs done", timeout=90)
    assert set(_quick_done(herald).values()) == {1}
    # Every finished run goes a second after it ended, with the event it consumed.
    herald.wait_for(lambda: not herald.runs("quick"), what="the quick runs deleted by retention")
    herald.wait_for(lambda: not herald.cli_json("events", "list", "--asset", "jobs"), what="their events deleted")
    _then_what_was_needed_is_still_there(herald, held)
    # Once they end and age, the held run and the a & b run go too, with their events.
    herald.wait_for(lambda: not herald.runs(), what="every run deleted")
    herald.wait_for(lambda: not herald.cli_json("events", "list"), what="every event deleted")
