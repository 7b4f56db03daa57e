"""Nothing lost, nothing doubled: kill -9 Herald at random and at chosen instants.

`make test` runs this at CI size (HERALD_FAULT_MESSAGES, default 2,000);
`make test-faults` at full size. Each scenario publishes N messages, kills the
standalone process while they flow, restarts it, waits until the queue is
drained and checks: exactly N events, exactly one run per event, every run
finished with its task succeeded exactly once, and nothing left in the queue.
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from herald.config import normalise_database_url
from herald.store import tables as t
from tests.e2e.conftest import Herald

MESSAGES = int(os.environ.get("HERALD_FAULT_MESSAGES", "2000"))
KILLS = int(os.environ.get("HERALD_FAULT_KILLS", "3"))
#: generous limits that grow with the size (`make test-faults` sends 50 times more)
DRAIN_TIMEOUT = max(240.0, MESSAGES / 40)
TEST_TIMEOUT = int(DRAIN_TIMEOUT * 2 + 120)

DAG = """
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

jobs = Asset("jobs", watchers=[AssetWatcher("w", MessageQueueTrigger("local://jobs"))])

@dag(schedule=[jobs])
def faulty():
    @task(retries=5)
    def work(triggering_asset_events):
        payload = triggering_asset_events[jobs][0].extra["payload"]
        if payload.get("crash") and not os.path.exists(MARK):
            open(MARK, "w").close()
            os.kill(herald_pid(), signal.SIGKILL)  # Herald itself dies in the middle of this task
            time.sleep(30)
        return payload["n"]
    work()

faulty()
"""
HEADER = """import os, signal, time
MARK = os.path.join(os.environ['HERALD_HOME'], 'crashed-once')


def herald_pid():
    # the try runs in its worker, a child of Herald; Herald is the nearest ancestor
    # running `herald standalone`
    pid = os.getppid()
    while pid > 1:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            if b"standalone" in fh.read():
                return pid
        with open(f"/proc/{pid}/stat") as fh:
            pid = int(fh.read().rsplit(")", 1)[1].split()[1])
    raise RuntimeError("no herald standalone above this task")
"""


class Ledger:
    """Reads Herald's tables directly (fast enough to poll while thousands of runs flow)."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(normalise_database_url(url), poolclass=NullPool)

    def count(self, table: Any, *where: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())

    def drained(self, n: int) -> bool:
        return (
            self.count(t.asset_event) >= n
            and self.count(t.event_queue) == 0
            and self.count(t.dag_run, t.dag_run.c.state.in_(["queued", "running"])) == 0
            and self.count(t.local_queue_message) == 0
        )

    def check(self, n: int) -> None:
        """The promise: N events, one run each, every run and task succeeded exactly once."""
        with self.engine.connect() as conn:
            events = conn.execute(select(t.asset_event.c.id, t.asset_event.c.extra)).all()
            payloads = sorted(e.extra["payload"]["n"] for e in events)
            assert payloads == list(range(n)), f"{len(events)} events for {n} messages"
            links = conn.execute(select(t.dag_run_event.c.event_id, t.dag_run_event.c.run_pk)).all()
            consumed = sorted(link.event_id for link in links)
            assert consumed == sorted(e.id for e in events), "an event ran twice or never"
            assert len({link.run_pk for link in links}) == n, "runs are not one per event"
            states = dict(conn.execute(select(t.dag_run.c.state, func.count()).group_by(t.dag_run.c.state)).all())
            assert states == {"success": n}, states
            results = (
                conn.execute(select(t.task_instance.c.result).where(t.task_instance.c.state == "success"))
                .scalars()
                .all()
            )
            assert sorted(results) == list(range(n)), "a task succeeded twice or never"
            assert self.count(t.local_queue_message) == 0
            assert self.count(t.dead_letter) == 0

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture
def ledger(herald: Herald) -> Any:
    led = Ledger(herald.env["HERALD_DATABASE_URL"])
    yield led
    led.close()


def publish_in_background(herald: Herald, bodies: list[dict[str, Any]], chunk: int = 50) -> threading.Thread:
    def send() -> None:
        for i in range(0, len(bodies), chunk):
            for attempt in range(20):
                try:
                    herald.publish("jobs", *bodies[i : i + chunk])
                    break
                except OperationalError:
                    # The test's own connection was cut with the others: publish the chunk again.
                    if attempt == 19:
                        raise
                    time.sleep(0.2)
            time.sleep(0.01)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def wait_drained(herald: Herald, ledger: Ledger, n: int) -> None:
    herald.wait_for(lambda: ledger.drained(n), timeout=DRAIN_TIMEOUT, what=f"{n} messages drained")


@pytest.mark.timeout(TEST_TIMEOUT)
def test_random_kills_while_messages_flow(herald: Herald, ledger: Ledger) -> None:
    herald.write_dag("faulty", HEADER + DAG)
    herald.start()
    sender = publish_in_background(herald, [{"n": i} for i in range(MESSAGES)])
    rng = random.Random(MESSAGES)
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.3, 1.5))
        herald.kill()
        herald.start()
    sender.join(120)
    wait_drained(herald, ledger, MESSAGES)
    ledger.check(MESSAGES)


@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
def test_crash_at_the_commit_boundary(herald: Herald, ledger: Ledger, point: str) -> None:
    herald.write_dag("faulty", HEADER + DAG)
    n = 200
    herald.publish("jobs", *[{"n": i} for i in range(n)])
    herald.start(extra_env={"HERALD_FAULT": f"{point}:1"}, wait=False)
    herald.wait_for(lambda: herald.proc is not None and herald.proc.poll() is not None, 60, f"the crash at {point}")
    assert herald.proc is not None and herald.proc.returncode == 137
    herald.proc = None
    herald.start()
    wait_drained(herald, ledger, n)
    ledger.check(n)


def test_crash_in_the_middle_of_a_task(herald: Herald, ledger: Ledger) -> None:
    herald.write_dag("faulty", HEADER + DAG)
    n = 50
    herald.publish("jobs", *[{"n": i, "crash": i == 10} for i in range(n)])
    herald.start(wait=False)
    herald.wait_for(lambda: herald.proc is not None and herald.proc.poll() is not None, 60, "the crash in a task")
    herald.proc = None
    herald.start()
    wait_drained(herald, ledger, n)
    ledger.check(n)
    # The task really took Herald down once; after the restart it ran again and succeeded once.
    assert (herald.home / "crashed-once").exists()


def test_back_pressure_keeps_the_backlog_in_the_queue(herald: Herald, ledger: Ledger) -> None:
    """Slow tasks: runs and events stop piling up; messages wait in their queue instead."""
    herald.write_dag(
        "slow",
        """\

        import time
        from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

        jobs = Asset("jobs", watchers=[AssetWatcher("w", MessageQueueTrigger("local://jobs"))])

        @dag(schedule=[jobs])
        def slow():
            @task
            def work(triggering_asset_events):
                time.sleep(0.02)
                return triggering_asset_events[jobs][0].extra["payload"]["n"]
            work()

        slow()
        """,
    )
    n = 300
    herald.publish("jobs", *[{"n": i} for i in range(n)])
    herald.start(extra_env={"HERALD_MAX_EVENT_BACKLOG": "20", "HERALD_MAX_WAITING_TRIES": "4"})
    most_events_waiting = most_tries_waiting = 0
    saw_messages_held_back = False
    while not ledger.drained(n):
        most_events_waiting = max(most_events_waiting, ledger.count(t.event_queue))
        most_tries_waiting = max(most_tries_waiting, ledger.count(t.task_instance, t.task_instance.c.state == "queued"))
        saw_messages_held_back |= ledger.count(t.local_queue_message) > 0 and ledger.count(t.asset_event) > 0
        time.sleep(0.05)
    ledger.check(n)
    assert saw_messages_held_back
    assert most_events_waiting <= 20
    # Without back-pressure all 300 tries would be queued at once. With it, 4 wait for a
    # worker; the database also counts as queued the tries handed to the 2 workers since
    # the last scheduler pass (a slow pass on a loaded machine lets a few more through).
    assert most_tries_waiting < 30


def test_database_connections_cut_while_messages_flow(tmp_path: Any, pg_database: str) -> None:
    """PostgreSQL drops every connection (as in a restart) three times: Herald reconnects, nothing is lost."""
    import psycopg

    from tests.conftest import PG_ADMIN_URL

    herald = Herald(tmp_path / "home", pg_database)
    ledger = Ledger(pg_database)
    name = pg_database.rsplit("/", 1)[1]
    try:
        herald.write_dag("faulty", HEADER + DAG)
        herald.start()
        n = 600
        sender = publish_in_background(herald, [{"n": i} for i in range(n)], chunk=20)
        for _ in range(3):
            time.sleep(0.7)
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                cut = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                    "pg_backend_pid()",
                    (name,),
                ).fetchone()
            assert cut is not None and cut[0] > 0
        sender.join(120)
        wait_drained(herald, ledger, n)
        ledger.check(n)
        assert herald.proc is not None and herald.proc.poll() is None, "Herald must survive the outage"
    finally:
        if herald.proc is not None:
            herald.stop()
        ledger.close()
