"""Herald standalone end to end: messages on local:// become runs, read back through the CLI."""

from __future__ import annotations

import asyncio
import signal
import textwrap
import time

from sqlalchemy import select

from herald.executors.records import TaskRequest, TaskResult
from herald.scheduler.scheduler import Scheduler
from herald.sdk.dag import DAG, Task
from herald.store import runs as store_runs
from herald.store import tables
from herald.store import tries as store_tries
from herald.store.db import Database
from herald.store.migrate import upgrade
from herald.store.runs import trigger_run
from herald.store.states import TryState
from tests.e2e.conftest import Herald

ORDERS_DAG = """
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

orders = Asset("orders", watchers=[AssetWatcher("orders_local", MessageQueueTrigger("local://orders"))])

@dag(schedule=[orders])
def process_orders():
    @task
    def handle(triggering_asset_events):
        events = triggering_asset_events[orders]
        print("handling", [e.extra["payload"] for e in events])
        return events[0].extra["payload"]

    @task
    def confirm(order, run_id, dag_run):
        return {"order": order, "run_id": run_id, "same": run_id == dag_run.run_id}

    confirm(handle())

process_orders()
"""


def test_one_run_per_message_each_task_gets_its_payload(herald: Herald) -> None:
    herald.write_dag("orders", ORDERS_DAG)
    herald.start()
    bodies = [{"order_id": i, "amount": i * 10} for i in range(5)]
    herald.publish("orders", *bodies)
    runs = herald.wait_runs(5, "process_orders")

    assert len(runs) == 5
    assert {r["state"] for r in runs} == {"success"}
    assert all(len(r["event_ids"]) == 1 for r in runs)
    assert len({r["event_ids"][0] for r in runs}) == 5
    seen = []
    for run in runs:
        detail = herald.cli_json("runs", "show", run["run_id"])
        tasks = {t["task_id"]: t for t in detail["tasks"]}
        assert tasks["handle"]["state"] == "success"
        confirm = tasks["confirm"]["result"]
        assert confirm["run_id"] == run["run_id"] and confirm["same"] is True
        seen.append(confirm["order"])
        log = herald.cli_json("tasks", "logs", run["run_id"], "handle")
        assert f"handling [{tasks['handle']['result']!r}]".replace("'", "'") in log["log"]
    assert sorted(seen, key=lambda b: b["order_id"]) == bodies
    events = herald.cli_json("events", "list", "--asset", "orders")
    assert sorted(e["extra"]["payload"]["order_id"] for e in events) == list(range(5))
    assert all(e["extra"]["message"]["broker"] == "local" for e in events)
    assert all(len(e["run_ids"]) == 1 for e in events)
    watchers = herald.cli_json("watchers", "list")
    assert watchers[0]["state"] == "running" and watchers[0]["events"] == 5


def test_event_batch_policy_makes_one_run_per_batch(herald: Herald) -> None:
    herald.write_dag(
        "batched",
        """
        from herald import Asset, AssetWatcher, EventBatch, MessageQueueTrigger, dag, task

        readings = Asset("readings", watchers=[AssetWatcher("w", MessageQueueTrigger("local://readings"))])

        @dag(schedule=readings, batch=EventBatch(max_events=3, max_wait=1.0))
        def batched():
            @task
            def count(triggering_asset_events):
                return len(triggering_asset_events[readings])
            count()

        batched()
        """,
    )
    herald.start()
    herald.publish("readings", *[{"i": i} for i in range(7)])
    runs = herald.wait_runs(3, "batched")
    sizes = sorted(len(r["event_ids"]) for r in runs)
    assert sizes == [1, 3, 3]
    all_events = sorted(e for r in runs for e in r["event_ids"])
    assert len(all_events) == len(set(all_events)) == 7


def test_max_active_runs_queues_runs_in_event_order(herald: Herald) -> None:
    herald.write_dag(
        "serial",
        """
        import time
        from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

        jobs = Asset("jobs", watchers=[AssetWatcher("w", MessageQueueTrigger("local://jobs"))])

        @dag(schedule=[jobs], max_active_runs=1)
        def serial():
            @task
            def work(triggering_asset_events):
                time.sleep(0.3)
                return triggering_asset_events[jobs][0].extra["payload"]
            work()

        serial()
        """,
    )
    herald.start()
    herald.publish("jobs", *[{"n": i} for i in range(4)])
    most_running = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = herald.runs("serial")
        most_running = max(most_running, sum(r["state"] == "running" for r in runs))
        if len(runs) == 4 and all(r["state"] == "success" for r in runs):
            break
        time.sleep(0.05)
    runs = herald.runs("serial")
    assert [r["state"] for r in runs] == ["success"] * 4
    assert most_running == 1
    by_start = sorted(runs, key=lambda r: r["started_at"])
    assert [r["event_ids"][0] for r in by_start] == sorted(r["event_ids"][0] for r in runs)


def test_and_waits_for_both_assets_or_runs_for_either(herald: Herald) -> None:
    herald.write_dag(
        "conditions",
        """
        from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

        a = Asset("a", watchers=[AssetWatcher("w", MessageQueueTrigger("local://a"))])
        b = Asset("b", watchers=[AssetWatcher("w", MessageQueueTrigger("local://b"))])

        @dag(schedule=a & b)
        def both():
            @task
            def seen(triggering_asset_events):
                return sorted(ev.asset.name for evs in triggering_asset_events.values() for ev in evs)
            seen()

        @dag(schedule=a | b)
        def either():
            @task
            def seen(triggering_asset_events):
                return sorted(ev.asset.name for evs in triggering_asset_events.values() for ev in evs)
            seen()

        both()
        either()
        """,
    )
    herald.start()
    herald.publish("a", {"x": 1})
    herald.wait_runs(1, "either")
    herald.publish("a", {"x": 2})
    herald.wait_runs(2, "either")
    assert herald.runs("both") == []
    herald.publish("b", {"y": 1})
    both = herald.wait_runs(1, "both")
    herald.wait_runs(3, "either")
    assert len(both) == 1 and len(both[0]["event_ids"]) == 3
    detail = herald.cli_json("runs", "show", both[0]["run_id"])
    assert detail["tasks"][0]["result"] == ["a", "a", "b"]
    assert all(len(r["event_ids"]) == 1 for r in herald.runs("either"))


def test_outlets_chain_two_dags(herald: Herald) -> None:
    herald.write_dag(
        "chain",
        """
        from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

        raw = Asset("raw", watchers=[AssetWatcher("w", MessageQueueTrigger("local://raw"))])
        cleaned = Asset("cleaned")

        @dag(schedule=[raw])
        def clean():
            @task(outlets=[cleaned])
            def do_clean(triggering_asset_events, outlet_events):
                value = triggering_asset_events[raw][0].extra["payload"]["v"]
                outlet_events[cleaned].extra = {"payload": {"v": value * 2}}
            do_clean()

        @dag(schedule=[cleaned])
        def use():
            @task
            def read(triggering_asset_events):
                return triggering_asset_events[cleaned][0].extra["payload"]["v"]
            read()

        clean()
        use()
        """,
    )
    herald.start()
    herald.publish("raw", {"v": 21})
    runs = herald.wait_runs(1, "use")
    detail = herald.cli_json("runs", "show", runs[0]["run_id"])
    assert detail["state"] == "success"
    assert detail["tasks"][0]["result"] == 42
    event = herald.cli_json("events", "list", "--asset", "cleaned")[0]
    assert event["source"] == "task:clean.do_clean"
    # Airflow's attributes of a task's event; its extra is what the task set, nothing added
    assert (event["source_dag_id"], event["source_task_id"], event["source_map_index"]) == ("clean", "do_clean", -1)
    assert event["source_run_id"] == herald.runs("clean")[0]["run_id"]
    assert event["extra"] == {"payload": {"v": 42}}


def test_retries_then_success_and_final_failure_skips_downstream(herald: Herald) -> None:
    herald.write_dag(
        "flaky",
        """
        from pathlib import Path
        from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

        jobs = Asset("jobs", watchers=[AssetWatcher("w", MessageQueueTrigger("local://jobs"))])
        COUNTER = Path(__file__).with_name("tries.txt")

        @dag(schedule=[jobs])
        def flaky():
            @task(retries=2, retry_delay=0.1)
            def sometimes():
                n = int(COUNTER.read_text()) if COUNTER.exists() else 0
                COUNTER.write_text(str(n + 1))
                if n < 2:
                    raise RuntimeError(f"try {n + 1} fails")
                return n + 1
            sometimes()

        @dag(schedule=[jobs])
        def broken():
            @task(retries=1)
            def always():
                raise ValueError("bad input")
            @task
            def after():
                return "never"
            always() >> after()

        flaky()
        broken()
        """,
    )
    herald.start()
    herald.publish("jobs", {"go": 1})
    ok = herald.wait_runs(1, "flaky")[0]
    bad = herald.wait_runs(1, "broken")[0]
    assert ok["state"] == "success"
    task = herald.cli_json("runs", "show", ok["run_id"])["tasks"][0]
    assert task["try_number"] == 3 and task["result"] == 3
    assert bad["state"] == "failed"
    tasks = {t["task_id"]: t for t in herald.cli_json("runs", "show", bad["run_id"])["tasks"]}
    assert tasks["always"]["state"] == "failed" and tasks["always"]["try_number"] == 2
    assert "ValueError: bad input" in tasks["always"]["error"]
    assert tasks["after"]["state"] == "upstream_failed"


def test_a_task_that_kills_its_worker_fails_and_the_pool_recovers(herald: Herald) -> None:
    herald.write_dag(
        "crashy",
        """
        import os, time
        from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

        jobs = Asset("jobs", watchers=[AssetWatcher("w", MessageQueueTrigger("local://jobs"))])

        @dag(schedule=[jobs])
        def crashy():
            @task(timeout=1)
            def maybe(triggering_asset_events):
                mode = triggering_asset_events[jobs][0].extra["payload"]
                if mode == "exit":
                    os._exit(3)
                if mode == "hang":
                    time.sleep(60)
                return "fine"
            maybe()

        crashy()
        """,
    )
    herald.start()
    herald.publish("jobs", "exit")
    herald.wait_runs(1, "crashy")
    herald.publish("jobs", "hang")
    herald.wait_runs(2, "crashy")
    herald.publish("jobs", "ok")
    runs = herald.wait_runs(3, "crashy")
    tasks = [herald.cli_json("runs", "show", run["run_id"])["tasks"][0] for run in runs]
    assert [(t["result"], t["error"]) for t in tasks if t["state"] == "success"] == [("fine", None)]
    failures = [t["error"] for t in tasks if t["state"] == "failed"]
    assert len(failures) == 2
    assert any("died (exit code 3)" in e for e in failures)
    assert any("timed out after 1s" in e for e in failures)


def test_an_import_error_is_listed_and_the_other_dags_keep_running(herald: Herald) -> None:
    herald.write_dag("orders", ORDERS_DAG)
    herald.write_dag("broken", "import not_a_module_anywhere\n")
    herald.start()
    errors = herald.cli_json("dags", "errors")
    assert len(errors) == 1 and errors[0]["fileloc"].endswith("broken.py")
    assert "ModuleNotFoundError" in errors[0]["error"]
    herald.publish("orders", {"order_id": 1})
    herald.wait_runs(1, "process_orders")
    # A file that breaks while Herald runs is reported, and the good DAG keeps going.
    herald.write_dag("late", "def oops(:\n")
    herald.wait_for(lambda: len(herald.cli_json("dags", "errors")) == 2, what="the second import error")
    herald.publish("orders", {"order_id": 2})
    herald.wait_runs(2, "process_orders")
    assert [d["dag_id"] for d in herald.cli_json("dags", "list")] == ["process_orders"]


def test_bad_messages_become_dead_letters_and_good_ones_still_run(herald: Herald) -> None:
    herald.write_dag(
        "strict",
        """
        import json
        from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

        def parse(message):
            return json.loads(message.value())

        orders = Asset("orders", watchers=[AssetWatcher(
            "w", MessageQueueTrigger("local://orders", apply_function=parse, max_payload_bytes=200))])

        @dag(schedule=[orders])
        def strict():
            @task
            def handle(triggering_asset_events):
                return triggering_asset_events[orders][0].extra["payload"]
            handle()

        strict()
        """,
    )
    herald.start()
    herald.publish("orders", "{broken json", {"big": "x" * 500}, {"ok": True})
    herald.wait_runs(1, "strict")
    dead = herald.wait_for(
        lambda: len(herald.cli_json("dead-letters", "list")) == 2 and herald.cli_json("dead-letters", "list"),
        what="2 dead letters",
    )
    reasons = sorted(d["error"] for d in dead)
    assert "JSONDecodeError" in reasons[0]
    assert "over the limit of 200" in reasons[1]
    assert {d["body"][:12] for d in dead} == {"{broken json", '{"big": "xxx'}
    watcher = herald.cli_json("watchers", "list")[0]
    assert (watcher["received"], watcher["events"], watcher["dead_lettered"]) == (3, 1, 2)
    assert herald.runs("strict")[0]["state"] == "success"


def test_a_dead_letter_replayed_after_the_dag_file_is_fixed_becomes_a_run(herald: Herald) -> None:
    source = """
        import json
        from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

        def parse(message):
            return {"value": VERSION(message.value())}

        trigger = MessageQueueTrigger("local://orders", apply_function=parse)
        orders = Asset("orders", watchers=[AssetWatcher("w", trigger)])

        @dag(schedule=[orders])
        def fixable():
            @task
            def handle(triggering_asset_events):
                return triggering_asset_events[orders][0].extra["payload"]["value"]
            handle()

        fixable()
        """
    herald.write_dag("fixable", "VERSION = int\n" + textwrap.dedent(source))
    herald.start()
    herald.publish("orders", "12", "twelve")
    herald.wait_runs(1, "fixable")
    dead = herald.wait_for(lambda: herald.cli_json("dead-letters", "list"), what="a dead letter")
    assert "invalid literal for int()" in dead[0]["error"]
    # Replayed before the fix, it fails again: the dead letter says when, and why (its error).
    assert herald.cli("dead-letters", "replay", str(dead[0]["id"]))[0] == 0
    failed = herald.wait_for(
        lambda: [d for d in herald.cli_json("dead-letters", "list") if d["replay_failed_at"]], what="the failed replay"
    )
    assert failed[0]["replayed_event_id"] is None and "invalid literal for int()" in failed[0]["error"]
    herald.write_dag("fixable", "VERSION = lambda b: len(b)\n" + textwrap.dedent(source))
    # The reload line comes after every subscriber (the triggerer among them) has the new file.
    # ("1 DAG(s)" alone would match the start-up banner, which counts the DAGs too.)
    herald.wait_for(lambda: "DAG files changed: 1 DAG(s)" in herald.output(), what="the reload")
    code, out = herald.cli("dead-letters", "replay", str(dead[0]["id"]))
    assert code == 0, out
    runs = herald.wait_runs(2, "fixable")
    results = sorted(herald.cli_json("runs", "show", r["run_id"])["tasks"][0]["result"] for r in runs)
    assert results == [6, 12]  # "twelve" has 6 bytes: replayed through the fixed apply_function
    replayed = herald.cli_json("dead-letters", "list")[0]
    assert replayed["replayed_at"] is not None
    # The event the replay became is named, and it is the one that caused the second run.
    event_of_run = {e for r in runs for e in herald.cli_json("runs", "show", r["run_id"])["event_ids"]}
    assert replayed["replayed_event_id"] in event_of_run
    code, out = herald.cli("dead-letters", "replay", str(dead[0]["id"]))
    assert code == 1 and "already replayed" in out  # a conflict, not a wrong argument


def test_manual_trigger_with_conf_and_params(herald: Herald) -> None:
    herald.write_dag(
        "manual",
        """
        from herald import dag, task

        @dag(schedule=None, params={"greeting": "hello", "name": "world"})
        def manual():
            @task
            def greet(params):
                return f"{params['greeting']} {params['name']}"
            greet()

        manual()
        """,
    )
    herald.start()
    code, out = herald.cli("dags", "trigger", "manual", "--conf", '{"name": "herald"}')
    assert code == 0, out
    run = herald.wait_runs(1, "manual")[0]
    assert run["run_type"] == "manual" and run["conf"] == {"name": "herald"}
    assert herald.cli_json("runs", "show", run["run_id"])["tasks"][0]["result"] == "hello herald"


def test_messages_sent_while_herald_is_down_run_after_restart(herald: Herald) -> None:
    herald.write_dag("orders", ORDERS_DAG)
    herald.start()
    herald.publish("orders", {"order_id": 1})
    herald.wait_runs(1, "process_orders")
    assert herald.stop(signal.SIGINT) == 0
    assert "Herald stopped." in herald.output()
    herald.publish("orders", {"order_id": 2}, {"order_id": 3})
    herald.start()
    runs = herald.wait_runs(3, "process_orders")
    assert sorted(len(r["event_ids"]) for r in runs) == [1, 1, 1]
    assert {r["state"] for r in runs} == {"success"}


def test_a_dag_file_added_while_running_is_picked_up(herald: Herald) -> None:
    herald.start()
    assert herald.cli_json("dags", "list") == []
    herald.write_dag("orders", ORDERS_DAG)
    herald.wait_for(lambda: herald.cli_json("dags", "list"), what="the new DAG")
    herald.wait_for(
        lambda: any(w["state"] == "running" for w in herald.cli_json("watchers", "list")), what="its watcher"
    )
    herald.publish("orders", {"order_id": 9})
    runs = herald.wait_runs(1, "process_orders")
    assert runs[0]["state"] == "success"


def test_a_return_value_that_is_not_json_fails_the_task_clearly(herald: Herald) -> None:
    herald.write_dag(
        "unserialisable",
        """
        from herald import dag, task

        @dag(schedule=None)
        def unserialisable():
            @task
            def make():
                return {1, 2, 3}
            make()

        unserialisable()
        """,
    )
    herald.start()
    herald.cli("dags", "trigger", "unserialisable")
    run = herald.wait_runs(1, "unserialisable")[0]
    task = herald.cli_json("runs", "show", run["run_id"])["tasks"][0]
    assert run["state"] == "failed"
    assert "returned a set, which is not JSON-serialisable" in task["error"]


def test_a_paused_dag_keeps_its_events_and_runs_them_when_unpaused(herald: Herald) -> None:
    herald.write_dag("orders", ORDERS_DAG)
    herald.start()
    code, out = herald.cli("dags", "pause", "process_orders")
    assert code == 0, out
    assert herald.cli_json("dags", "list")[0]["is_paused"] is True
    herald.publish("orders", {"order_id": 1}, {"order_id": 2})
    herald.wait_for(lambda: len(herald.cli_json("events", "list")) == 2, what="2 events")
    assert herald.runs("process_orders") == []
    code, out = herald.cli("dags", "unpause", "process_orders")
    assert code == 0, out
    runs = herald.wait_runs(2, "process_orders")
    assert {r["state"] for r in runs} == {"success"}


# -- the scheduler's side of skips, on a real database ------------------------------------------


class _Executor:
    """An executor that keeps what it is handed: the test plays the workers."""

    workers_in_process = False
    wake_channel = None
    needs_requests = True

    def __init__(self) -> None:
        self.submitted: list[TaskRequest] = []

    def start(self, on_started: object, on_result: object) -> None:
        pass

    def collect(self, conn: object, now: object) -> tuple[list[TaskResult], bool]:
        return [], False

    def queued(self, conn: object) -> int:
        return 0

    def submit(self, requests: list[TaskRequest]) -> None:
        self.submitted += requests

    def reload(self) -> None:
        pass

    async def stop(self, grace: float) -> None:
        pass


def test_skip_list_self_skip_and_no_retry_lead_to_the_right_states(database_url: str) -> None:
    # Given branch -> a -> b -> join <- c <- branch, c -> e (all_success), c -> f (none_failed, 3 retries)
    dag = DAG("skips")
    for task_id, upstream, rule, retries in [
        ("branch", set(), "all_success", 0),
        ("a", {"branch"}, "all_success", 0),
        ("b", {"a"}, "all_success", 0),
        ("c", {"branch"}, "all_success", 0),
        ("join", {"b", "c"}, "none_failed_min_one_success", 0),
        ("e", {"c"}, "all_success", 0),
        ("f", {"c"}, "none_failed", 3),
    ]:
        dag.tasks[task_id] = Task(task_id, print, upstream=upstream, trigger_rule=rule, retries=retries)
    db = Database(database_url)
    upgrade(db.engine)
    executor = _Executor()
    scheduler = Scheduler(db, executor, asyncio.Event())
    scheduler.update({"skips": dag}, {}, {})
    with db.engine.begin() as conn:
        run_id = trigger_run(conn, "skips", {"x": 1})

    def step(*results: TaskResult) -> list[TaskRequest]:
        executor.submitted = []
        outcome = scheduler._pass(list(results), [])
        executor.submit(outcome.requests)
        return executor.submitted

    def states() -> dict[str, str]:
        ti = tables.task_instance
        with db.engine.connect() as conn:
            return {r.task_id: r.state for r in conn.execute(select(ti.c.task_id, ti.c.state))}

    def run_state() -> str:
        with db.engine.connect() as conn:
            return str(conn.execute(select(tables.dag_run.c.state).where(tables.dag_run.c.run_id == run_id)).scalar())

    try:
        [branch] = step()
        assert (branch.task_id, branch.try_number, branch.map_index, branch.xcom) == ("branch", 1, -1, {})
        # When the branch succeeds, pushes a value and asks to skip `a`
        [c] = step(TaskResult(branch.ti_id, TryState.SUCCESS, result="c", skip=["a"], xcom={"k": 1}, try_number=1))
        # Then a and b (all_success below a skip) are skipped, c runs with the branch's values
        assert c.task_id == "c" and c.upstream == {"branch": "c"}
        assert c.xcom == {"branch": {"k": 1, "return_value": "c"}}
        assert states() == {
            "branch": "success", "a": "skipped", "b": "skipped", "c": "queued",
            "join": "none", "e": "none", "f": "none",
        }  # fmt: skip
        # When c skips itself: e (all_success) and join (no success upstream) are skipped, f (none_failed) runs
        [f] = step(TaskResult(c.ti_id, TryState.SKIPPED, try_number=1))
        assert f.task_id == "f"
        assert states()["e"] == "skipped" and states()["join"] == "skipped"
        assert run_state() == "running"
        # When f fails and asks not to be retried: failed at once despite its retries, and the run fails
        assert step(TaskResult(f.ti_id, TryState.FAILED, error="no", retry=False, try_number=1)) == []
        assert states()["f"] == "failed"
        assert run_state() == "failed"
        # When a user retries f: the run runs again, f is queued under its next try number
        with db.engine.begin() as conn:
            run_pk = conn.execute(select(tables.dag_run.c.id).where(tables.dag_run.c.run_id == run_id)).scalar_one()
            assert store_tries.clear(conn, run_pk, {"f": 1}, []) == 1
            assert store_runs.rerun(conn, run_pk)
        [again] = step()
        assert (again.task_id, again.try_number) == ("f", 2)
        step(TaskResult(again.ti_id, TryState.SUCCESS, try_number=2))
        assert states()["f"] == "success"
        assert run_state() == "success"
    finally:
        db.close()
