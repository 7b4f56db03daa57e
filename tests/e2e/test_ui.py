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


# Task ids that name JavaScript's object machinery, and an asset whose name holds "/".
ODD_DAG = """
from herald import Asset, dag, task

raw = Asset("raw/orders")


@dag(schedule=[raw])
def odd_ids():
    @task(task_id="constructor")
    def a():
        return 1

    @task(task_id="__proto__")
    def b(x):
        return x

    @task(task_id="toString")
    def c(x):
        return x

    c(b(a()))


odd_ids()
"""


def wait_until(page: Any, expression: str, timeout: float = 30) -> None:
    """Poll a JavaScript expression until it is true (`page.wait_for_function` evals a string,
    which the page's Content-Security-Policy forbids)."""
    import time

    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"{expression} still false after {timeout}s")
        page.wait_for_timeout(100)


def log_in(page: Any, base: str, token: str) -> None:
    """Open the UI at `base` and log in with `token`."""
    page.goto(base)
    page.fill("#token", token)
    page.click("#login-form button")


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
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # the page works under its Content-Security-Policy: the browser reports nothing it refused
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)

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
    # the standalone triggerer holds the watcher's lease
    page.wait_for_selector("#triggerer-list tr[data-triggerer='standalone'] td:has-text('orders/orders_local')")
    page.screenshot(path=str(shots / "watchers.png"), full_page=True)
    page.click("a[data-nav='dead-letters']")
    button = page.wait_for_selector("#dead-list button[data-replay]", timeout=60000)
    assert "not json {" in page.inner_text("#dead-list")
    button.click()
    page.wait_for_selector("#dead-list .replay-state:has-text('replay')")
    # The body is still not JSON: the replay fails again, and the page says so beside a new button.
    page.wait_for_selector("#dead-list .replay-failed:has-text('replay failed again')", timeout=60000)
    page.screenshot(path=str(shots / "dead_letters.png"), full_page=True)
    status, dead = call(herald, token, "GET", "/api/v1/dead-letters")
    assert status == 200 and dead["items"][0]["replay_failed_at"] and not dead["items"][0]["replayed_at"]

    # Variables: a value whose key names a secret is shown masked.
    assert herald.cli("variables", "set", "warehouse_password", "hunter2")[0] == 0
    assert herald.cli("variables", "set", "bucket", "s3://landing")[0] == 0
    page.click("a[data-nav='variables']")
    page.wait_for_selector("#variable-list tr[data-variable='warehouse_password']")
    assert "s3://landing" in page.inner_text("#variable-list") and "***" in page.inner_text("#variable-list")
    assert "hunter2" not in page.content()
    page.screenshot(path=str(shots / "variables.png"), full_page=True)

    # Task ids such as "constructor" and "__proto__" draw like any other; an asset named "raw/orders" opens.
    herald.write_dag("odd", ODD_DAG)
    herald.wait_for(lambda: "odd_ids" in {d["dag_id"] for d in herald.cli_json("dags", "list")}, what="odd_ids")
    page.goto(base + "#/dags/odd_ids")
    page.wait_for_selector("#dag-graph svg.graph g.node[data-task='__proto__']")
    assert page.locator("#dag-graph svg.graph g.node").count() == 3
    assert page.locator("#dag-graph svg.graph path.edge").count() == 2
    page.goto(base + "#/assets/raw%2Forders")
    page.wait_for_selector("#asset-head h1:has-text('raw/orders')")

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


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_the_api_docs_page_works_offline_under_the_csp(sqlite_herald: Herald, browser: Any) -> None:
    herald = sqlite_herald
    herald.start()
    page = browser.new_page(viewport={"width": 1360, "height": 860})
    problems: list[str] = []
    outside: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)

    def only_herald(route: Any) -> None:
        if route.request.url.startswith(f"http://127.0.0.1:{herald.port}/"):
            route.continue_()
        else:  # as on a machine with no internet: nothing may come from elsewhere
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_herald)
    page.goto(f"http://127.0.0.1:{herald.port}/api/v1/docs")
    page.wait_for_selector(".opblock-summary-path[data-path='/api/v1/health']")
    assert page.locator(".opblock").count() > 10  # every operation of the API is listed
    # The page can call the API it describes (connect-src 'self' allows it).
    page.click(".opblock-summary-path[data-path='/api/v1/health']")
    page.click(".opblock.is-open button.try-out__btn")
    page.click(".opblock.is-open button.execute")
    page.wait_for_selector(".opblock.is-open .live-responses-table .response-col_status:has-text('200')")
    assert outside == [] and problems == []


LONG_DAG = """
import json

from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task


def parse(message):
    return json.loads(message.body)

wide = Asset("a_rather_long_asset_name_for_wide_tables", watchers=[
    AssetWatcher(
        "a_rather_long_watcher_name",
        MessageQueueTrigger("local://a_queue_name_that_goes_on_and_on_and_on", apply_function=parse),
    ),
])


@dag(schedule=[wide])
def a_dag_with_a_long_name_that_fills_the_column():
    @task
    def a_task_with_a_long_name_too(triggering_asset_events):
        return len(triggering_asset_events[wide])

    a_task_with_a_long_name_too()


a_dag_with_a_long_name_that_fills_the_column()
"""


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_pages_fit_a_1024_pixel_window_with_long_values(sqlite_herald: Herald, browser: Any, tmp_path: Path) -> None:
    herald = sqlite_herald
    herald.write_dag("long", LONG_DAG)
    herald.start()
    token = admin_token(herald)
    queue = "a_queue_name_that_goes_on_and_on_and_on"
    herald.publish(queue, {"k" * 60: "v" * 400, "nested": {"list": list(range(80))}})
    herald.publish(queue, "x" * 3000 + " not json")  # a dead letter with a long body
    herald.wait_for(lambda: herald.runs("a_dag_with_a_long_name_that_fills_the_column", "success"), what="a run")
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    log_in(page, f"http://127.0.0.1:{herald.port}/", token)
    page.wait_for_selector(".dag-card")
    shots = Path(os.environ.get("HERALD_SCREENSHOTS_DIR") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    wide: dict[str, int] = {}
    for route, ready in [
        ("#/dags", ".dag-card .dot"),
        ("#/runs", "#run-list tr[data-run]"),
        ("#/events", "#event-list tr[data-event]"),
        ("#/watchers", "#watcher-list tr"),
        ("#/dead-letters", "#dead-list tr[data-dead]"),
        ("#/assets/a_rather_long_asset_name_for_wide_tables", "#asset-events tr[data-event]"),
    ]:
        page.goto(f"http://127.0.0.1:{herald.port}/{route}")
        page.wait_for_selector(ready)
        width = page.evaluate("document.documentElement.scrollWidth")
        page.screenshot(path=str(shots / f"1024_{route.strip('#/').split('/')[0]}.png"), full_page=True)
        if width > 1024:
            wide[route] = width
    assert wide == {}, f"pages wider than the window (scrollWidth): {wide}"
    # The DAG card's health dots take their run's colour (a successful run is green, not grey).
    page.goto(f"http://127.0.0.1:{herald.port}/#/dags")
    dot = page.wait_for_selector(".dag-card .dot.s-success")
    grey = page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--waiting')").strip()
    assert dot.evaluate("el => getComputedStyle(el).backgroundColor") not in (grey, "rgb(206, 212, 218)")


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_dag_and_watcher_pages_chart_what_happened(sqlite_herald: Herald, browser: Any, tmp_path: Path) -> None:
    herald = sqlite_herald
    herald.write_dag("orders", ORDERS_DAG)
    herald.start()
    token = admin_token(herald)
    for n in range(3):
        herald.publish("ui_orders", {"order_id": n})
    herald.publish("ui_orders", "not json {")
    herald.wait_for(lambda: len(herald.runs("process_orders", "success")) == 3, what="three runs")
    shots = Path(os.environ.get("HERALD_SCREENSHOTS_DIR") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    base = f"http://127.0.0.1:{herald.port}/"
    log_in(page, base, token)
    page.wait_for_selector(".dag-card")

    # The DAG page: runs of the last hour by state, durations and latencies, and the grid.
    page.goto(base + "#/dags/process_orders")
    page.wait_for_selector("#dag-activity svg.chart rect.seg[data-series='success']")
    assert "p50" in page.inner_text("#dag-activity [data-figure='event to first task']")
    assert "(3 run(s))" in page.inner_text("#dag-activity [data-figure='run duration']")
    page.wait_for_selector("#dag-grid tr[data-task='load']")
    assert page.locator("#dag-grid tr[data-task] td.grid-cell .dot.s-success").count() == 4 * 3
    page.screenshot(path=str(shots / "dag_charts.png"), full_page=True)

    # The watcher page: its counters, events and dead letters over time, and its dead letters.
    page.goto(base + "#/watchers")
    page.click("#watcher-list a.watcher-link")
    page.wait_for_selector("#watcher-activity svg.chart rect.seg[data-series='events']")
    assert page.locator("#watcher-activity rect.seg[data-series='dead_letters']").count() == 1
    assert "JSONDecodeError" in page.inner_text("#watcher-dead")
    page.screenshot(path=str(shots / "watcher.png"), full_page=True)
    page.click("#replay-watcher")
    page.wait_for_selector(".toast:has-text('Replay of 1 dead letter(s) requested')")
    assert errors == []


BREAKS_DAG = """
from herald import dag, task


def page_the_warehouse(context):
    raise ConnectionError("the pager is down too")


@dag(schedule=None, on_failure_callback=page_the_warehouse)
def breaks():
    @task
    def fail_here():
        print("opening the warehouse")
        raise ValueError("the warehouse is closed")

    @task
    def after(x):
        return x

    after(fail_here())


breaks()
"""


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_a_failed_run_opens_on_the_failed_tasks_log(sqlite_herald: Herald, browser: Any, tmp_path: Path) -> None:
    herald = sqlite_herald
    herald.write_dag("breaks", BREAKS_DAG)
    herald.start()
    token = admin_token(herald)
    herald.wait_for(lambda: "breaks" in {d["dag_id"] for d in herald.cli_json("dags", "list")}, what="the DAG")
    code, out = herald.cli("dags", "trigger", "breaks", "--conf", '{"who": "ops"}')
    assert code == 0, out
    herald.wait_for(lambda: herald.runs("breaks", "failed"), what="a failed run")
    (run,) = herald.runs("breaks", "failed")
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    base = f"http://127.0.0.1:{herald.port}/"
    log_in(page, base, token)
    page.wait_for_selector(".dag-card")
    page.goto(base + "#/runs/" + run["run_id"].replace(":", "%3A").replace("+", "%2B"))
    # Nothing clicked: the failed task's log is open, with its error.
    page.wait_for_selector("#log:has-text('ValueError: the warehouse is closed')")
    assert "opening the warehouse" in page.inner_text("#log") and "fail_here" in page.inner_text("#log-title")
    # Each task with its state spelled out, and the conf the run was given.
    row = page.inner_text("#run-tasks tr[data-task-row='after']")
    assert "upstream failed" in row and "a task it depends on failed" in row
    assert "ValueError: the warehouse is closed" in page.inner_text("#run-tasks tr[data-task-row='fail_here']")
    assert '"who": "ops"' in page.inner_text("#run-conf")
    # The DAG's failure callback, which raised: its outcome and traceback
    page.wait_for_selector("#run-callbacks tr[data-callback='on_failure_callback'] .badge.s-failed")
    callback = page.inner_text("#run-callbacks tr[data-callback='on_failure_callback']")
    assert "task_failure" in callback and "ConnectionError: the pager is down too" in callback
    shots = Path(os.environ.get("HERALD_SCREENSHOTS_DIR") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "failed_run.png"), full_page=True)


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_filters_are_kept_in_the_url(sqlite_herald: Herald, browser: Any) -> None:
    herald = sqlite_herald
    herald.write_dag("breaks", BREAKS_DAG)
    herald.write_dag("orders", ORDERS_DAG)
    herald.start()
    token = admin_token(herald)
    wanted = {"breaks", "process_orders"}
    herald.wait_for(lambda: wanted <= {d["dag_id"] for d in herald.cli_json("dags", "list")}, what="the DAGs")
    assert herald.cli("dags", "trigger", "breaks")[0] == 0
    herald.publish("ui_orders", {"order_id": 7})
    herald.wait_for(lambda: herald.runs("breaks", "failed") and herald.runs("process_orders", "success"), what="runs")
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    base = f"http://127.0.0.1:{herald.port}/"
    log_in(page, base, token)
    page.wait_for_selector(".dag-card")

    # A filtered URL opened directly shows only what it names, its selects set to match.
    page.goto(base + "#/runs?dag=breaks&state=failed")
    page.wait_for_selector("#run-list tr[data-run] .badge.s-failed")
    assert page.locator("#run-list tr[data-run]").count() == 1
    page.wait_for_selector("#run-dag option[value='process_orders']", state="attached")
    assert page.eval_on_selector("#run-dag", "s => s.value") == "breaks"
    # Changing a filter rewrites the URL; a reload keeps it.
    page.select_option("#run-dag", "process_orders")
    page.select_option("#run-state", "success")
    wait_until(page, "location.hash === '#/runs?dag=process_orders&state=success'")
    page.wait_for_selector("#run-list tr[data-run] .badge.s-success")
    page.reload()
    page.wait_for_selector("#run-list tr[data-run] .badge.s-success")
    assert page.locator("#run-list tr[data-run] .badge.s-failed").count() == 0
    # Events by asset, dead letters by watcher.
    page.goto(base + "#/events?asset=orders")
    page.wait_for_selector("#event-list tr[data-event]")
    assert page.locator("#event-list tr[data-event]").count() == 1
    page.goto(base + "#/events?asset=nothing_here")
    page.wait_for_selector("#event-list .empty")
    # A search in the payloads, typed into the page, goes into the URL.
    herald.publish("ui_orders", {"order_id": 8, "customer": "Zebra Stores"})
    page.goto(base + "#/events")
    page.wait_for_selector("#event-list tr[data-event]")
    page.fill("#event-q", "zebra")
    page.press("#event-q", "Enter")
    wait_until(page, "location.hash === '#/events?q=zebra'")
    page.wait_for_selector("#event-list tr[data-event]:has-text('Zebra Stores')", timeout=60000)
    wait_until(page, "document.querySelectorAll('#event-list tr[data-event]').length === 1")
    # The failed runs of a filter are retried with one button.
    page.goto(base + "#/runs?dag=breaks&state=failed")
    page.click("#retry-filter")
    page.wait_for_selector(".toast:has-text('Retrying 1 failed run(s)')")
    herald.publish("ui_orders", "not json {")
    page.goto(base + "#/watchers")
    page.click("#watcher-list a[href^='#/dead-letters?watcher=']", timeout=60000)
    page.wait_for_selector("#dead-list tr[data-dead]")
    assert page.evaluate("location.hash").startswith("#/dead-letters?watcher=")
    # Dead letters by reason, and a replay of all of them.
    page.fill("#dead-error", "no such reason")
    page.press("#dead-error", "Enter")
    page.wait_for_selector("#dead-list .empty")
    page.fill("#dead-error", "jsondecodeerror")
    page.press("#dead-error", "Enter")
    page.wait_for_selector("#dead-list tr[data-dead]")
    page.click("#replay-filter")
    page.wait_for_selector(".toast:has-text('Replay of 1 dead letter(s) requested')")


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_a_watcher_is_paused_and_resumed_from_its_page(sqlite_herald: Herald, browser: Any) -> None:
    herald = sqlite_herald
    herald.write_dag("orders", ORDERS_DAG)
    herald.start()
    token = admin_token(herald)
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    base = f"http://127.0.0.1:{herald.port}/"
    log_in(page, base, token)
    page.goto(base + "#/watchers")
    page.click("#watcher-list a.watcher-link")
    # Who holds it: the standalone's triggerer.
    page.wait_for_selector("#watcher-lease:has-text('standalone')")
    page.click("#pause-watcher")
    page.wait_for_selector("#watcher-head .badge.s-paused")
    # Paused, a message waits in its queue (tests/integration/test_local.py checks it makes
    # no event meanwhile); resumed, it runs.
    herald.publish("ui_orders", {"order_id": 9})
    page.wait_for_selector("#pause-watcher:has-text('Resume')")
    page.click("#pause-watcher")
    page.wait_for_selector("#pause-watcher:has-text('Pause')")
    herald.wait_for(lambda: herald.runs("process_orders", "success"), what="the run of the message that waited")
