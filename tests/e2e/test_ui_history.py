"""History in the web UI and the CLI, in real headless Chromium at 1,024 px against a real
`herald standalone`: every try of a task with why it ended (the run page, `herald runs show`),
a watcher's lag over time and its errors with times (the watcher page).

Screenshots go to a temporary folder, or to `$HERALD_SCREENSHOTS_DIR` (docs/screenshots).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Herald
from tests.e2e.test_ui import ORDERS_DAG, admin_token, browser, log_in, sqlite_herald  # noqa: F401

TRIES_DAG = """
from pathlib import Path

from herald import dag, task

MARK = Path({mark!r})


@dag(schedule=None)
def tries_shown():
    @task(retries=1, retry_delay=0)
    def flaky():
        if not MARK.exists():
            MARK.write_text("failed once")
            raise ConnectionError("the warehouse hung up")
        return "loaded"

    @task(timeout=1)
    def slow():
        import time

        time.sleep(30)

    @task
    def after(x):
        return x

    flaky()
    after(slow())


tries_shown()
"""

# A watcher whose broker is not there: it reconnects, with an error, until it is.
BROKEN_DAG = """
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

readings = Asset(
    "readings",
    watchers=[AssetWatcher("readings_redis", MessageQueueTrigger("redis://127.0.0.1:1/0?stream=readings&group=ui"))],
)


@dag(schedule=[readings])
def store_readings():
    @task
    def keep():
        return 1

    keep()


store_readings()
"""

WIDTH = 1024


def _shots(tmp_path: Path) -> Path:
    shots = Path(os.environ.get("HERALD_SCREENSHOTS_DIR") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def _fits(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= WIDTH, f"{page.url} is {width} px wide in a {WIDTH} px window"


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_the_run_page_and_runs_show_list_every_try_with_why_it_ended(
    sqlite_herald: Herald,  # noqa: F811
    browser: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    herald = sqlite_herald
    herald.write_dag("tries", TRIES_DAG.format(mark=str(tmp_path / "flaky_once")))
    herald.start()
    token = admin_token(herald)
    herald.wait_for(lambda: "tries_shown" in {d["dag_id"] for d in herald.cli_json("dags", "list")}, what="the DAG")
    code, out = herald.cli("dags", "trigger", "tries_shown")
    assert code == 0, out
    (run,) = herald.wait_for(lambda: herald.runs("tries_shown", "failed"), what="the run failed", timeout=90)

    # The CLI: each try with why it ended, and the same as JSON.
    code, out = herald.cli("runs", "show", run["run_id"])
    assert code == 0, out
    assert "Tries" in out and "failed, will retry" in out and "ConnectionError" in out
    assert "timed out" in out and "upstream failed" in out
    assert max(len(line) for line in out.splitlines()) <= 100
    code, out = herald.cli("runs", "show", run["run_id"], "--output", "json")
    tries = {t["task_id"]: [(x["try_number"], x["reason"]) for x in t["tries"]] for t in json.loads(out)["tasks"]}
    assert tries == {
        "flaky": [(1, "failed"), (2, "success")],
        "slow": [(1, "timed_out")],
        "after": [(0, "upstream_failed")],
    }

    # The run page: the tries under each task, the reason spelled out.
    page = browser.new_page(viewport={"width": WIDTH, "height": 768})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    base = f"http://127.0.0.1:{herald.port}/"
    log_in(page, base, token)
    page.wait_for_selector(".dag-card")
    page.goto(base + "#/runs/" + run["run_id"].replace(":", "%3A").replace("+", "%2B"))
    page.wait_for_selector("#run-tasks tr[data-task-row='flaky'] li.try[data-try='2']")
    flaky = page.inner_text("#run-tasks tr[data-task-row='flaky'] ol.tries")
    assert "try 1" in flaky and "failed, will retry" in flaky and "ConnectionError: the warehouse hung up" in flaky
    assert "try 2" in flaky and "succeeded" in flaky
    slow = page.inner_text("#run-tasks tr[data-task-row='slow'] ol.tries")
    assert "timed out" in slow and "timed out after 1s" in slow
    assert "not run" in page.inner_text("#run-tasks tr[data-task-row='after'] li.try[data-reason='upstream_failed']")
    _fits(page)
    page.screenshot(path=str(_shots(tmp_path) / "run_tries.png"), full_page=True)
    assert errors == []


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_the_watcher_page_charts_lag_over_time_and_lists_errors_with_times(
    sqlite_herald: Herald,  # noqa: F811
    browser: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    herald = sqlite_herald
    herald.write_dag("orders", ORDERS_DAG)
    herald.write_dag("broken", BROKEN_DAG)
    # Samples every second; two events waiting for runs are enough to stop taking messages.
    herald.start({"HERALD_WATCHER_SAMPLE_INTERVAL": "1", "HERALD_MAX_EVENT_BACKLOG": "3"})
    token = admin_token(herald)
    for n in range(3):
        herald.publish("ui_orders", {"order_id": n})
    herald.wait_for(lambda: len(herald.runs("process_orders", "success")) == 3, what="three runs")
    # A paused DAG keeps its events queued: past the backlog the rest wait in the queue (lag).
    assert herald.cli("dags", "pause", "process_orders")[0] == 0
    for n in range(3, 12):
        herald.publish("ui_orders", {"order_id": n})
    watchers = {w["name"]: w for w in herald.cli_json("watchers", "list")}
    orders, broken = watchers["orders_local"]["id"], watchers["readings_redis"]["id"]

    page = browser.new_page(viewport={"width": WIDTH, "height": 768})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    base = f"http://127.0.0.1:{herald.port}/"
    log_in(page, base, token)
    page.wait_for_selector(".dag-card")
    shots = _shots(tmp_path)

    # The pages the history links from, at 1,024 px: runs, events, the DAG's grid.
    for route, ready, name in [
        ("#/runs", "#run-list tr[data-run]", "runs.png"),
        ("#/events", "#event-list tr[data-event]", "events.png"),
        ("#/dags/process_orders", "#dag-grid tr[data-task='load'] .dot.s-success", "dag_grid.png"),
    ]:
        page.goto(base + route)
        page.wait_for_selector(ready)
        _fits(page)
        page.screenshot(path=str(shots / name), full_page=True)

    # The watcher behind its queue: a lag chart with the messages waiting.
    page.goto(base + f"#/watchers/{orders}")
    deadline_reload = 0
    while "now 0 waiting" in (page.inner_text("#watcher-lag") or "now 0 waiting") and deadline_reload < 30:
        # the chart is fetched every 10 s: a reload shows the newest samples at once
        page.wait_for_timeout(1000)
        page.reload()
        page.wait_for_selector("#watcher-lag svg.chart, #watcher-lag .empty")
        deadline_reload += 1
    page.wait_for_selector("#watcher-lag svg.chart rect.seg[data-series='lag']")
    assert "waiting" in page.inner_text("#lag-now") and "now 0 waiting" not in page.inner_text("#lag-now")
    assert "No error" in page.inner_text("#watcher-errors")
    _fits(page)
    page.screenshot(path=str(shots / "watcher_lag.png"), full_page=True)

    # The watcher whose broker is away: its error, when it was first and last seen.
    page.goto(base + f"#/watchers/{broken}")
    row = page.wait_for_selector("#watcher-errors tr[data-error-at]", timeout=30000)
    assert "Error" in row.inner_text() and "reconnecting" in row.inner_text()
    _fits(page)
    page.screenshot(path=str(shots / "watcher_errors.png"), full_page=True)
    assert errors == []
