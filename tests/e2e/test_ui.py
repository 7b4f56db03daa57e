"""The web UI in real headless Chromium (Debian's), against a real `herald standalone`.

Screenshots go to a temporary folder, or to `$HERALD_SCREENSHOTS_DIR` (the README's
come from `HERALD_SCREENSHOTS_DIR=docs/screenshots pytest tests/e2e/test_ui.py`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Herald

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

ORDERS_DAG = """
import json

from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task


def parse(message):
    return json.loads(message.body)  # a body that is not JSON becomes a dead letter


orders = Asset(
    "orders", watchers=[AssetWatcher("orders_local", MessageQueueTrigger("local://ui_orders", apply_function=parse))]
)


@dag(schedule=[orders], description="extract, check and load each order")
def process_orders():
    @task
    def extract(triggering_asset_events):
        payload = triggering_asset_events[orders][0].extra["payload"]
        print("extracting order", payload["order_id"])
        return payload

    @task
    def check(order):
        print("checking", order["order_id"])
        return order

    @task
    def price(order):
        return order["order_id"] * 10

    @task
    def load(order, total):
        print("loaded order", order["order_id"], "for", total)

    order = check(extract())
    load(order, price(order))


@dag(schedule=None)
def nightly_report():
    @task
    def report():
        print("report")

    report()


process_orders()
nightly_report()
"""


def admin_token(herald: Herald) -> str:
    found = re.search(r"admin token:\s+(hrld_\S+)", herald.output())
    assert found, f"no admin token in the banner:\n{herald.output()}"
    return found.group(1)


def call(herald: Herald, token: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    request = urllib.request.Request(
        f"http://127.0.0.1:{herald.port}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
        return response.status, (json.loads(text) if "json" in response.headers.get("content-type", "") else text)


@pytest.fixture
def sqlite_herald(tmp_path: Path) -> Iterator[Herald]:
    h = Herald(tmp_path / "home", f"sqlite:///{tmp_path}/home/herald.db")
    yield h
    if h.proc is not None:
        h.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is not installed (apt-get install -y chromium; make test does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_the_ui_shows_every_message_path(sqlite_herald: Herald, browser: Any, tmp_path: Path) -> None:
    herald = sqlite_herald
    shots = Path(os.environ.get("HERALD_SCREENSHOTS_DIR") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    herald.write_dag("orders", ORDERS_DAG)
    herald.start()
    token = admin_token(herald)
    base = f"http://127.0.0.1:{herald.port}/"
    page = browser.new_page(viewport={"width": 1360, "height": 860})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # Given a token, the login page lets us in; nothing is shown without one.
    page.goto(base)
    page.wait_for_selector("#login-form", state="visible")
    assert page.locator("#main").inner_text().strip() == ""
    page.fill("#token", "hrld_wrong")
    page.click("#login-form button")
    page.wait_for_selector("#login-error:has-text('not valid')")
    page.fill("#token", token)
    page.click("#login-form button")

    # The DAG list shows each DAG with its task graph drawn as SVG.
    card = page.wait_for_selector(".dag-card[data-dag='process_orders']")
    page.wait_for_selector(".dag-card[data-dag='process_orders'] svg.graph g.node")
    assert card.query_selector_all("svg.graph g.node").__len__() == 4
    assert "on orders" in card.inner_text()
    assert token not in page.content()
    page.screenshot(path=str(shots / "dags.png"), full_page=True)

    page.click(".dag-card[data-dag='process_orders'] a")
    page.wait_for_selector("#dag-graph svg.graph g.node[data-task='load']")
    assert page.locator("#dag-graph svg.graph path.edge").count() == 4

    # A message published to the queue becomes a run that appears and succeeds without a reload.
    page.click("a[data-nav='runs']")
    page.wait_for_selector("#run-list")
    page.evaluate("window.__noReload = 'still here'")
    herald.publish("ui_orders", {"order_id": 42})
    row = page.wait_for_selector("#run-list tr[data-run] .badge.s-success", timeout=60000)
    assert page.evaluate("window.__noReload") == "still here"
    run_id = row.evaluate("el => el.closest('tr').dataset.run")

    # The run: task bars, the graph coloured by state, and each task's log.
    page.click(f"#run-list tr[data-run='{run_id}'] td:first-child a")
    page.wait_for_selector(".gantt .bar.s-success")
    assert page.locator(".gantt .bar").count() == 4
    assert page.locator("#run-graph g.node.t-success").count() == 4
    page.click(".gantt a[data-log='extract']")
    page.wait_for_selector("#log:has-text('extracting order 42')")
    page.screenshot(path=str(shots / "run.png"), full_page=True)

    # Follow the event that caused the run, and back from the event to the run.
    page.click("#run-events a.event-link")
    page.wait_for_selector("#event-payload:has-text('42')")
    assert '"broker": "local"' in page.inner_text("#event-message")
    page.screenshot(path=str(shots / "event.png"), full_page=True)
    page.click(f"#event-runs a[href='#/runs/{run_id.replace(':', '%3A').replace('+', '%2B')}']")
    page.wait_for_selector(f"#run-head:has-text('{run_id}')")

    # The asset page: a chart of events over time and each event with the runs it caused.
    page.click("#run-events td:nth-child(2) a")
    page.wait_for_selector("#asset-chart svg.chart rect.bar")
    page.wait_for_selector("#asset-events tr[data-event] .badge.s-success")
    page.screenshot(path=str(shots / "asset.png"), full_page=True)

    # A message that is not JSON becomes a dead letter; the replay button asks for a replay.
    herald.publish("ui_orders", "not json {")
    page.click("a[data-nav='watchers']")
    page.wait_for_selector("#watcher-list td:has-text('orders_local')")
    page.screenshot(path=str(shots / "watchers.png"), full_page=True)
    page.click("a[data-nav='dead-letters']")
    button = page.wait_for_selector("#dead-list button[data-replay]", timeout=60000)
    assert "not json {" in page.inner_text("#dead-list")
    button.click()
    page.wait_for_selector("#dead-list .replay-state:has-text('replay')")
    page.screenshot(path=str(shots / "dead_letters.png"), full_page=True)
    status, dead = call(herald, token, "GET", "/api/v1/dead-letters")
    assert status == 200 and (dead["items"][0]["replay_requested_at"] or dead["items"][0]["replayed_at"])

    # Logging out forgets the token.
    page.click("#logout")
    page.wait_for_selector("#login-form", state="visible")
    assert page.evaluate("localStorage.getItem('herald.token')") is None
    assert errors == []


@pytest.mark.e2e
def test_the_api_of_a_real_standalone(herald: Herald) -> None:
    """Through `herald standalone` on SQLite and PostgreSQL: admin token, webhook, run, retry-free success, metrics."""
    herald.write_dag("orders", ORDERS_DAG)
    herald.start()
    token = admin_token(herald)
    status, event = call(
        herald,
        token,
        "POST",
        "/api/v1/assets/orders/events",
        {"extra": {"payload": {"order_id": 7}}},
        {"Idempotency-Key": "o7"},
    )
    assert status == 201
    status, again = call(
        herald,
        token,
        "POST",
        "/api/v1/assets/orders/events",
        {"extra": {"payload": {"order_id": 7}}},
        {"Idempotency-Key": "o7"},
    )
    assert status == 200 and again["id"] == event["id"]

    def succeeded() -> Any:
        _, runs = call(herald, token, "GET", "/api/v1/runs?state=success")
        return runs["items"]

    [run] = herald.wait_for(succeeded, 60, "the webhook's run")
    assert run["event_ids"] == [event["id"]]
    _, log = call(herald, token, "GET", f"/api/v1/runs/{run['run_id']}/tasks/load/log")
    assert "loaded order 7 for 70" in log["log"]
    status, manual = call(herald, token, "POST", "/api/v1/dags/nightly_report/runs", {"conf": {"day": "monday"}})
    assert status == 201 and manual["conf"] == {"day": "monday"}
    herald.wait_for(lambda: len(succeeded()) == 2, 60, "the manual run")
    _, metrics = call(herald, token, "GET", "/metrics")
    assert 'herald_dag_runs{dag_id="process_orders",state="success"} 1.0' in metrics
    assert "herald_event_to_task_start_seconds_count 1.0" in metrics
    # Restarting makes no second admin token and never prints the first again.
    herald.stop()
    herald.start()
    assert len(re.findall(r"admin token:\s+hrld_", herald.output())) == 1
    assert herald.output().count(token) == 1
