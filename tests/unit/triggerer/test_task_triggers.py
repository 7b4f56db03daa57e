"""Triggers written for Airflow that deferred tries wait on: the scheduler's passes and the triggerer's runner.

The passes are driven by hand (as in tests/unit/scheduler/test_waits.py) and the
tries run in `run_task` as a worker runs them; the triggers run in real
`TaskTriggers` runners on the same database, SQLite and PostgreSQL. The DAG file
defines its own trigger class, as an Airflow user writes one.
"""

from __future__ import annotations

import asyncio
import logging
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from herald import notify
from herald.config import normalise_database_url
from herald.executors.records import TaskResult
from herald.executors.worker import run_task
from herald.loader import load_folder
from herald.scheduler.scheduler import Scheduler
from herald.sdk.dag import DAG
from herald.store import runs as store_runs
from herald.store import tables as t
from herald.store import trigger_waits
from herald.store.db import Database
from herald.store.migrate import upgrade
from herald.store.states import TryState
from herald.store.sync import sync_bag
from herald.store.trigger_waits import Fired
from herald.store.types import utcnow
from herald.triggerer.task_triggers import TaskTriggers
from tests.unit.scheduler.test_passes import Recorder

DAGS = """
import asyncio, os, time
from datetime import UTC, datetime
from herald import DAG, BaseOperator, BaseTrigger, TaskSuccessEvent, TriggerEvent


class Flag(BaseTrigger):
    # fires once the file at `path` exists; counts its runs beside it

    def __init__(self, path, when=None, fail=None, end=False, block=False):
        super().__init__()
        self.path, self.when, self.fail, self.end, self.block = path, when, fail, end, block

    def serialize(self):
        kwargs = {"path": self.path, "when": self.when, "fail": self.fail, "end": self.end, "block": self.block}
        return (f"{type(self).__module__}.{type(self).__qualname__}", kwargs)

    async def run(self):
        with open(self.path + ".runs", "a") as f:
            f.write(f"{self.task_instance.task_id}\\n")
        while not os.path.exists(self.path):
            if self.block:
                time.sleep(0.05)  # a badly written trigger: it blocks its event loop
            else:
                await asyncio.sleep(0.02)
        if self.fail:
            raise ValueError(self.fail)
        if self.end:
            yield TaskSuccessEvent(xcoms={"return_value": "ended by the trigger", "checked": 1})
            return
        yield TriggerEvent({"path": self.path, "when": self.when})

    async def cleanup(self):
        with open(self.path + ".cleaned", "a") as f:
            f.write("cleaned\\n")


class WaitFlag(BaseOperator):
    template_fields = ("path",)

    def __init__(self, path, fail=None, end=False, block=False, defer_timeout=None, **kwargs):
        super().__init__(**kwargs)
        self.path, self.fail, self.end, self.block, self.defer_timeout = path, fail, end, block, defer_timeout

    def execute(self, context):
        when = datetime(2030, 1, 1, tzinfo=UTC)
        trigger = Flag(self.path, when=when, fail=self.fail, end=self.end, block=self.block)
        self.defer(trigger=trigger, method_name="resumed", kwargs={"note": "n"}, timeout=self.defer_timeout)

    def resumed(self, context, event=None, note=None):
        when = event["when"]
        return {"path": event["path"], "when": when.isoformat(), "type": type(when).__name__, "note": note,
                "try": context["ti"].try_number}


with DAG(dag_id="flag", schedule=None):
    WaitFlag(task_id="wait", path="{{ dag_run.conf.path }}")

with DAG(dag_id="flag_fail", schedule=None):
    WaitFlag(task_id="wait", path="{{ dag_run.conf.path }}", fail="boom", retries=1, retry_delay=0)

with DAG(dag_id="flag_end", schedule=None):
    WaitFlag(task_id="wait", path="{{ dag_run.conf.path }}", end=True)

with DAG(dag_id="flag_late", schedule=None):
    WaitFlag(task_id="wait", path="{{ dag_run.conf.path }}", defer_timeout=0)

with DAG(dag_id="flag_block", schedule=None):
    WaitFlag(task_id="wait", path="{{ dag_run.conf.path }}", block=True)
"""


@dataclass
class Passes:
    folder: Path
    db: Database
    scheduler: Scheduler
    executor: Recorder
    dags: dict[str, DAG]

    def trigger(self, dag_id: str, path: Path) -> None:
        with self.db.engine.begin() as conn:
            store_runs.trigger_run(conn, dag_id, {"path": str(path)})

    def run(self, *results: TaskResult) -> None:
        outcome = self.scheduler._pass(list(results), [])
        self.executor.submit(outcome.requests)

    def work(self) -> list[TaskResult]:
        handed, self.executor.submitted = self.executor.submitted, []
        return [TaskResult.from_wire(run_task(self.dags, r.to_wire())) for r in handed]

    def settle(self, rounds: int = 6) -> None:
        for _ in range(rounds):
            self.run(*self.work())
            if not self.executor.submitted:
                return

    def tries(self, dag_id: str) -> list[Any]:
        ti = t.task_instance
        with self.db.engine.connect() as conn:
            return list(
                conn.execute(
                    select(ti.c.state, ti.c.try_number, ti.c.result, ti.c.error, ti.c.log, ti.c.xcom)
                    .where(ti.c.dag_id == dag_id)
                    .order_by(ti.c.id)
                ).all()
            )

    def waits(self) -> list[Any]:
        w = t.task_wait
        with self.db.engine.connect() as conn:
            return list(conn.execute(select(w).order_by(w.c.ti_id)).all())

    def runner(self, owner: str, live: Callable[[], list[str]] | None = None) -> TaskTriggers:
        runner = TaskTriggers(self.db, notify.Listener(self.db.url), owner, live or (lambda: [owner]), lambda: None)
        runner.update_dags(self.dags)
        return runner


@pytest.fixture
def passes(tmp_path: Path, database_url: str) -> Iterator[Passes]:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "flags.py").write_text(textwrap.dedent(DAGS))
    db = Database(normalise_database_url(database_url))
    upgrade(db.engine)
    bag = load_folder(folder)
    assert not bag.errors, bag.errors
    catalog = sync_bag(db.engine, bag)
    executor = Recorder()
    scheduler = Scheduler(db, executor, asyncio.Event())
    scheduler.update(bag.dags, catalog.asset_ids, catalog.consumers)
    yield Passes(folder, db, scheduler, executor, bag.dags)
    db.close()


async def until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll `check` (off the loop) until it is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(check)
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def started(*runners: TaskTriggers) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(r.run()) for r in runners]


async def stopped(tasks: list[asyncio.Task[None]], *runners: TaskTriggers) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for runner in runners:
        await runner.stop()


def test_a_trigger_in_the_dag_file_runs_in_the_triggerer_and_its_event_resumes_the_try_in_its_method(
    passes: Passes, tmp_path: Path
) -> None:
    flag = tmp_path / "f1"
    passes.trigger("flag", flag)
    passes.run()
    passes.settle()
    [(state, *_)] = passes.tries("flag")
    assert state == TryState.DEFERRED
    [wait] = passes.waits()
    assert wait.trigger_classpath.endswith(".Flag") and wait.trigger_kwargs["path"] == str(flag)
    assert wait.trigger_kwargs["when"] == {"__herald_datetime__": "2030-01-01T00:00:00+00:00"}

    async def scenario() -> None:
        runner = passes.runner("t1")
        tasks = started(runner)
        try:
            await until(lambda: (tmp_path / "f1.runs").exists(), "the trigger to start")
            assert passes.waits()[0].lease_owner == "t1"
            flag.write_text("here")
            await until(lambda: passes.waits()[0].fired_at is not None, "the trigger to fire")
            await until(lambda: (tmp_path / "f1.cleaned").exists(), "its cleanup")
        finally:
            await stopped(tasks, runner)

    asyncio.run(scenario())
    passes.run()  # the pass that sees it fired hands the try back, in its method
    [request] = passes.executor.submitted
    assert (request.next_method, request.try_number) == ("resumed", 1)
    assert request.next_kwargs is not None and request.next_kwargs["note"] == "n"
    passes.settle()
    [(state, try_number, result, error, log, _)] = passes.tries("flag")
    assert (state, try_number, error) == (TryState.SUCCESS, 1, None)
    assert result == {"path": str(flag), "when": "2030-01-01T00:00:00+00:00", "type": "DateTime", "note": "n", "try": 1}
    assert "Resuming after the deferral in WaitFlag.resumed" in log
    assert passes.waits() == []
    assert (tmp_path / "f1.runs").read_text() == "wait\n"


def test_a_trigger_that_raises_fails_its_try_in_a_worker_and_the_retry_defers_again(
    passes: Passes, tmp_path: Path
) -> None:
    flag = tmp_path / "f2"
    flag.write_text("here")  # the trigger raises at once
    passes.trigger("flag_fail", flag)
    passes.run()
    passes.settle()

    async def scenario() -> None:
        runner = passes.runner("t1")
        tasks = started(runner)
        try:
            for attempt in (1, 2):
                await until(lambda: any(w.fired_at for w in passes.waits()), f"try {attempt}'s trigger to fail")
                await asyncio.to_thread(passes.run)
                [request] = passes.executor.submitted
                assert (request.next_method, request.try_number) == ("__fail__", attempt)
                await asyncio.to_thread(passes.settle)
        finally:
            await stopped(tasks, runner)

    asyncio.run(scenario())
    [(state, try_number, _, error, log, _)] = passes.tries("flag_fail")
    assert (state, try_number) == (TryState.FAILED, 2)
    assert error.startswith("TaskDeferralError: Trigger failure: ") and "raised: ValueError: boom" in error
    assert "The trigger failed:" in log and "ValueError: boom" in log
    assert (tmp_path / "f2.runs").read_text() == "wait\nwait\n"


def test_a_trigger_that_does_not_fire_within_the_timeout_fails_its_try(passes: Passes, tmp_path: Path) -> None:
    passes.trigger("flag_late", tmp_path / "never")
    passes.run()
    [deferring] = passes.work()
    passes.run(deferring)  # the pass storing the wait sees its deadline (now + 0 s) pass
    [request] = passes.executor.submitted
    assert (request.next_method, request.try_number) == ("__fail__", 1)
    passes.settle()
    [(state, _, _, error, _, _)] = passes.tries("flag_late")
    assert state == TryState.FAILED
    assert error.startswith("TaskDeferralTimeout: Trigger/execution timeout: trigger ")
    assert error.endswith("did not fire within 0s")


def test_an_end_event_ends_the_try_without_a_worker(passes: Passes, tmp_path: Path) -> None:
    flag = tmp_path / "f3"
    flag.write_text("here")
    passes.trigger("flag_end", flag)
    passes.run()
    passes.settle()

    async def scenario() -> None:
        runner = passes.runner("t1")
        tasks = started(runner)
        try:
            await until(lambda: any(w.fired_at for w in passes.waits()), "the trigger to end the task")
        finally:
            await stopped(tasks, runner)

    asyncio.run(scenario())
    passes.run()
    assert passes.executor.submitted == []
    [(state, _, result, _, _, xcom)] = passes.tries("flag_end")
    assert (state, result) == (TryState.SUCCESS, "ended by the trigger")
    assert xcom == {"return_value": "ended by the trigger", "checked": 1}


def test_triggerers_share_the_triggers_and_a_dead_one_s_run_again_elsewhere_resume_their_try_once(
    passes: Passes, tmp_path: Path
) -> None:
    flags = [tmp_path / f"s{i}" for i in range(4)]
    for flag in flags:
        passes.trigger("flag", flag)
    passes.run()
    passes.settle()
    live = ["a", "b"]

    async def scenario() -> None:
        a, b = passes.runner("a", lambda: live), passes.runner("b", lambda: live)
        tasks_a, tasks_b = started(a), started(b)
        try:
            await until(lambda: all((tmp_path / f"s{i}.runs").exists() for i in range(4)), "every trigger to run")
            owners = sorted(w.lease_owner for w in passes.waits())
            assert owners == ["a", "a", "b", "b"]
            # a dies (its process is gone: nothing renews its leases) while its triggers still run
            # here, as a holder stalled past its lease would: they are run again by b
            for task in tasks_a:
                task.cancel()
            await asyncio.gather(*tasks_a, return_exceptions=True)
            live[:] = ["b"]
            with passes.db.engine.begin() as conn:
                w = t.task_wait
                conn.execute(update(w).where(w.c.lease_owner == "a").values(lease_expires_at=utcnow()))
            b._wake.set()
            await until(lambda: {w.lease_owner for w in passes.waits()} == {"b"}, "b to take a's triggers")
            await until(
                lambda: sum((tmp_path / f"s{i}.runs").read_text().count("wait") for i in range(4)) == 6,
                "a's two triggers to run again in b",
            )
            for flag in flags:
                flag.write_text("here")  # both runs of a's triggers fire: only the first stored counts
            await until(lambda: all(w.fired_at for w in passes.waits()), "every trigger to fire")
        finally:
            await stopped(tasks_b, b)
            await a.stop()

    asyncio.run(scenario())
    passes.run()
    assert sorted(r.next_method or "" for r in passes.executor.submitted) == ["resumed"] * 4
    passes.settle()
    results = [r.result for r in passes.tries("flag")]
    assert sorted(r["path"] for r in results) == sorted(map(str, flags))
    assert {r["try"] for r in results} == {1}


def test_a_trigger_that_cannot_be_built_fails_its_own_try_only(passes: Passes, tmp_path: Path) -> None:
    passes.trigger("flag", tmp_path / "gone")
    passes.trigger("flag", tmp_path / "ok")
    passes.run()
    [first, second] = passes.work()
    # the first deferred on a trigger whose module the triggerer cannot import (removed since)
    broken = {"trigger": {"classpath": "no_such_module_here.Trigger", "kwargs": {}}, "method": "resumed"}
    passes.run(TaskResult(first.ti_id, TryState.DEFERRED, defer=broken), second)
    (tmp_path / "ok").write_text("here")

    async def scenario() -> None:
        runner = passes.runner("t1")
        tasks = started(runner)
        try:
            await until(lambda: len([w for w in passes.waits() if w.fired_at]) == 2, "both triggers to end")
        finally:
            await stopped(tasks, runner)

    asyncio.run(scenario())
    passes.run()
    passes.settle()
    [(failed, _, _, error, _, _), (ok, _, result, _, _, _)] = passes.tries("flag")
    assert failed == TryState.FAILED and ok == TryState.SUCCESS
    assert "Trigger failure: no_such_module_here.Trigger could not be built: ImportError" in error
    assert result["path"] == str(tmp_path / "ok")


def test_a_trigger_that_blocks_its_loop_is_named_and_leaves_the_triggerer_s_own_loop_running(
    passes: Passes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flag = tmp_path / "b1"
    passes.trigger("flag_block", flag)
    passes.run()
    passes.settle()
    caplog.set_level(logging.WARNING, logger="herald.triggerer")

    async def scenario() -> None:
        runner = passes.runner("t1")
        tasks = started(runner)
        try:
            await until(lambda: (tmp_path / "b1.runs").exists(), "the blocking trigger to start")
            # the main loop goes on (this test runs on it) while the triggers' loop is blocked
            await until(lambda: "have been blocked" in caplog.text, "the watchdog to name the trigger")
            flag.write_text("here")
            await until(lambda: passes.waits()[0].fired_at is not None, "the trigger to fire once unblocked")
        finally:
            await stopped(tasks, runner)

    asyncio.run(scenario())
    assert ".Flag of try " in caplog.text and "flag_block.wait" in caplog.text


def test_only_the_first_outcome_of_a_deferral_is_stored(passes: Passes, tmp_path: Path) -> None:
    passes.trigger("flag", tmp_path / "x")
    passes.run()
    passes.settle()
    [wait] = passes.waits()
    with passes.db.engine.begin() as conn:
        assert not trigger_waits.fire(conn, wait.ti_id, "another-deferral", Fired("event", event=1), utcnow())
        assert trigger_waits.fire(conn, wait.ti_id, wait.trigger_token, Fired("event", event=2), utcnow())
        assert not trigger_waits.fire(conn, wait.ti_id, wait.trigger_token, Fired("event", event=3), utcnow())
    assert passes.waits()[0].fired == {"kind": "event", "event": 2}


def test_a_trigger_whose_module_hangs_when_imported_fails_its_own_try_after_the_time_limit(
    passes: Passes, tmp_path: Path
) -> None:
    # a module beside the DAG file that nobody imported yet, and that hangs when imported
    name = f"slow_to_import_{uuid.uuid4().hex[:8]}"
    (passes.folder / f"{name}.py").write_text("import time\ntime.sleep(5)\nclass Trigger: ...\n")
    passes.trigger("flag", tmp_path / "hang")
    passes.trigger("flag", tmp_path / "fine")
    passes.run()
    [first, second] = passes.work()
    hanging = {"trigger": {"classpath": f"{name}.Trigger", "kwargs": {}}, "method": "resumed"}
    passes.run(TaskResult(first.ti_id, TryState.DEFERRED, defer=hanging), second)
    (tmp_path / "fine").write_text("here")

    async def scenario() -> None:
        runner = passes.runner("t1")
        runner.import_timeout = 0.3
        tasks = started(runner)
        try:
            await until(lambda: len([w for w in passes.waits() if w.fired_at]) == 2, "both triggers to end")
        finally:
            await stopped(tasks, runner)

    asyncio.run(scenario())
    passes.run()
    passes.settle()
    [(failed, _, _, error, _, _), (ok, _, _, _, _, _)] = passes.tries("flag")
    assert (failed, ok) == (TryState.FAILED, TryState.SUCCESS)
    assert f"importing {name}.Trigger took longer than 0.3s" in error
