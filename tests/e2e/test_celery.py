"""Tasks on Celery workers: two schedulers, two triggerers, two Celery workers on PostgreSQL.

Messages come from two brokers (the embedded local:// queue and Redis Streams);
Celery's own broker is Redis, then RabbitMQ. Every message makes one successful
run, the runs are spread over both workers, and a worker killed mid-task loses
nothing: the tries it ran go back to the queue as lost (none of the task's
retries used: it has none) and every run succeeds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herald.executors.reaper import running
from tests.conftest import require_service
from tests.e2e.conftest import HERALD, Herald

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

CELERY_DAG = """
import os, time
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, get_current_context, task

local_jobs = Asset("local_jobs", watchers=[AssetWatcher("local", MessageQueueTrigger("local://jobs"))])
redis_jobs = Asset("redis_jobs", watchers=[AssetWatcher("redis", MessageQueueTrigger(os.environ["TEST_STREAM_URL"]))])

@dag(schedule=(local_jobs | redis_jobs))
def celery_job():
    # No retries: a run saved from a killed worker was saved by the lost-worker requeue.
    @task
    def work(triggering_asset_events):
        ctx = get_current_context()
        payload = [e for events in triggering_asset_events.values() for e in events][0].extra["payload"]
        # One line per try that starts: the same try starting twice would show here.
        with open(os.environ["TEST_STARTS"], "a") as fh:
            fh.write(f"{ctx['run_id']} {ctx['ti']['try_number']} {os.getpid()}\\n")
        time.sleep(payload.get("sleep", 0.005))
        return {"n": payload["n"]}

    @task
    def after(result):
        return result["n"]

    after(work())

celery_job()

@dag(schedule=None)
def gpu_job():
    @task(queue="gpu")
    def infer():
        return os.getpid()

    infer()

gpu_job()

@dag(schedule=None)
def stuck_job():
    @task(timeout=1)
    def stuck():
        import subprocess
        # what it starts ends with the try: a child, and a sleep whose shell exits at once
        child = subprocess.Popen(["sleep", "600"])
        daemon = subprocess.run(["sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True)
        with open(os.environ["TEST_STARTS"] + ".stuck", "w") as fh:
            fh.write(f"{child.pid} {int(daemon.stdout)}")
        print("waiting for ever")
        time.sleep(60)

    stuck()

stuck_job()
"""


class CeleryCluster:
    """Herald's processes, each in a session of its own (a worker's pool dies with it)."""

    def __init__(self, herald: Herald) -> None:
        self.herald = herald
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        with (self.herald.home / f"{name}.log").open("ab") as out:
            self.procs[name] = subprocess.Popen(
                [HERALD, *args],
                env=self.herald.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.herald.home,
                start_new_session=True,
            )

    def kill_group(self, name: str) -> None:
        """kill -9 the process and its Celery pool processes, as a lost machine would."""
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
            # Whatever is left of the session (Celery pool processes included).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in Path(self.herald.home).glob("*.log"))

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.herald.env["HERALD_DATABASE_URL"]) as conn:
            return conn.execute(query, params).fetchall()


def _cluster(tmp_path: Path, pg_database: str, broker_url: str) -> Iterator[CeleryCluster]:
    herald = Herald(tmp_path / "home", pg_database)
    tag = uuid.uuid4().hex[:10]
    herald.env.update(
        {
            "HERALD_EXECUTOR": "celery",
            "HERALD_CELERY_BROKER_URL": broker_url,
            # A Celery queue of this test's own on the shared broker.
            "HERALD_CELERY_QUEUE_PREFIX": f"herald-test-{tag}.",
            # Redis gives a dead worker's unacknowledged messages back this soon.
            "HERALD_CELERY_VISIBILITY_TIMEOUT": "10",
            "HERALD_CELERY_RESEND_AFTER": "4",
            # A killed worker's tries are lost (and queued again) after this much silence.
            "HERALD_HEARTBEAT_TIMEOUT": "10",
            "TEST_STREAM_URL": f"redis://127.0.0.1:6379/0?stream=herald-celery-{tag}&group=herald",
            "TEST_STARTS": str(tmp_path / "starts.txt"),
        }
    )
    (tmp_path / "starts.txt").touch()
    c = CeleryCluster(herald)
    yield c
    c.stop_all()
    import redis

    redis.Redis.from_url("redis://127.0.0.1:6379/0").delete(f"herald-celery-{tag}")


@pytest.fixture
def redis_cluster(tmp_path: Path, pg_database: str) -> Iterator[CeleryCluster]:
    require_service("Redis", "127.0.0.1", 6379)
    yield from _cluster(tmp_path, pg_database, "redis://127.0.0.1:6379/0")


@pytest.fixture
def rabbitmq_cluster(tmp_path: Path, pg_database: str) -> Iterator[CeleryCluster]:
    require_service("Redis", "127.0.0.1", 6379)  # the Redis Streams watcher
    require_service("RabbitMQ", "127.0.0.1", 5672)
    yield from _cluster(tmp_path, pg_database, "amqp://guest:guest@127.0.0.1:5672//")


def _publish(cluster: CeleryCluster, bodies: list[dict[str, Any]]) -> None:
    """Half to local://jobs, half to the Redis stream."""
    from herald.publishing import close_publishers, publish

    cluster.herald.publish("jobs", *bodies[::2])
    try:
        for body in bodies[1::2]:
            publish(cluster.herald.env["TEST_STREAM_URL"], body)
    finally:
        close_publishers()  # no connection of this test's outlives it


def _finished(herald: Herald, count: int, timeout: float) -> list[dict[str, Any]]:
    return herald.wait_runs(count, "celery_job", timeout=timeout)


def _take(broker_url: str, queue: str) -> set[int]:
    """Take away every message waiting in a Celery queue, as a broker that lost them would;
    returns the tries they carried (several per message)."""
    import kombu
    from kombu.exceptions import ChannelError

    tries: set[int] = set()
    with kombu.Connection(broker_url) as conn:
        try:
            conn.default_channel.queue_declare(queue, passive=True)
        except ChannelError:
            return tries  # not declared before its first message
        source = kombu.Queue(queue, no_declare=True)(conn.default_channel)
        while (message := source.get(no_ack=True)) is not None:
            args = message.decode()[0]  # Celery's message body: [args, kwargs, embed]
            tries.update(int(item[0]) for item in args[0])
    return tries


def scenario(cluster: CeleryCluster, messages: int, lose_messages: bool = False, kill_pool: bool = True) -> None:
    herald = cluster.herald
    herald.write_dag("celery_dag", CELERY_DAG)
    for name in ("scheduler-1", "scheduler-2"):
        cluster.start(name, "scheduler")
    for name in ("triggerer-1", "triggerer-2"):
        cluster.start(name, "triggerer")
    herald.wait_for(
        lambda: len([w for w in herald.cli_json("watchers", "list") if w["state"] == "running"]) == 2,
        what="both watchers running",
        timeout=60,
    )
    began = time.monotonic()
    if lose_messages:
        # Tries queued, then their Celery messages lost: the schedulers send them again.
        _publish(cluster, [{"n": i} for i in range(messages)])
        herald.wait_for(
            lambda: cluster.sql("SELECT count(*) FROM task_instance WHERE state = 'queued'")[0][0] == messages,
            what="every first try queued",
        )
        queue = herald.env["HERALD_CELERY_QUEUE_PREFIX"] + "default"
        broker = herald.env["HERALD_CELERY_BROKER_URL"]
        # Each try's message is published after the pass that queued it commits.
        taken: set[int] = set()

        def every_message_taken() -> bool:
            taken.update(_take(broker, queue))
            return len(taken) == messages

        herald.wait_for(every_message_taken, what="every first try's Celery message taken away")
    cluster.start("worker-1", "worker", "--concurrency", "2")
    cluster.start("worker-2", "worker", "--concurrency", "2", "--queues", "default,gpu")

    # 1. Messages from both brokers: one successful run each, on both workers.
    if not lose_messages:
        herald.wait_for(
            lambda: all("[queues]" in (herald.home / f"{n}.log").read_text() for n in ("worker-1", "worker-2")),
            what="both Celery workers started",
        )
        began = time.monotonic()
        _publish(cluster, [{"n": i} for i in range(messages)])
    runs = _finished(herald, messages, timeout=90)
    elapsed = time.monotonic() - began
    if not lose_messages:
        print(f"\n{messages} runs (2 tasks each) through Celery in {elapsed:.1f}s: {messages / elapsed:.0f} runs/s")
    assert len(runs) == messages, cluster.logs()
    assert {r["state"] for r in runs} == {"success"}, cluster.logs()
    workers = {
        str(host).split("/")[0] for (host,) in cluster.sql("SELECT hostname FROM task_instance WHERE state = 'success'")
    }
    pids = {str(cluster.procs[n].pid) for n in ("worker-1", "worker-2")}
    assert {w.rsplit(":", 1)[1] for w in workers} == pids, f"both workers should have run tasks: {workers}"

    # @task(queue="gpu") runs only on the worker that serves that queue.
    for _ in range(4):
        code, out = herald.cli("dags", "trigger", "gpu_job")
        assert code == 0, out
    code, out = herald.cli("dags", "trigger", "stuck_job")
    assert code == 0, out
    gpu_runs = herald.wait_runs(4, "gpu_job", timeout=60)
    assert {r["state"] for r in gpu_runs} == {"success"}, cluster.logs()
    gpu_hosts = {str(h) for (h,) in cluster.sql("SELECT hostname FROM task_instance WHERE task_id = 'infer'")}
    assert {h.split("/")[0].rsplit(":", 1)[1] for h in gpu_hosts} == {str(cluster.procs["worker-2"].pid)}

    # A task past its timeout fails with the reason, its log kept.
    (stuck,) = herald.wait_runs(1, "stuck_job", timeout=60)
    assert stuck["state"] == "failed"
    ((error, log),) = cluster.sql("SELECT error, log FROM task_instance WHERE task_id = 'stuck'")
    assert error == "timed out after 1s (timeout=1)" and "waiting for ever" in log, (error, log)
    children = [int(p) for p in Path(herald.env["TEST_STARTS"] + ".stuck").read_text().split()]
    assert len(children) == 2 and "[herald] ended 2 process(es)" in log, log
    assert not any(running(p) for p in children)  # ended before the try's result was stored

    # 2. A worker dies (with its pool) while it runs tasks: nothing is lost.
    slow = [{"n": messages + i, "sleep": 4} for i in range(4)]
    quick = [{"n": messages + len(slow) + i} for i in range(40)]
    _publish(cluster, slow + quick)

    def running_slow() -> str | None:
        rows = cluster.sql(
            "SELECT hostname FROM task_instance WHERE state = 'running' AND task_id = 'work' "
            "AND started_at < now() - interval '1 second'"
        )
        return str(rows[0][0]) if rows else None

    host = herald.wait_for(running_slow, timeout=60, what="a slow task running on a worker")
    victim = next(n for n in ("worker-1", "worker-2") if host.split("/")[0].endswith(f":{cluster.procs[n].pid}"))
    if kill_pool:
        cluster.kill_group(victim)
    else:
        # Only the Celery worker's main process: its messages go back to the broker
        # while its pool process may still finish the try it runs.
        cluster.procs[victim].kill()
        cluster.procs[victim].wait()
    # What the dead worker held: the tries of the messages its pool processes had taken
    # (claimed together, run one after the other). Only these may be lost.
    held = {
        int(i)
        for (i,) in cluster.sql(
            "SELECT id FROM task_instance WHERE state = 'running' AND split_part(hostname, '/', 1) LIKE %s",
            f"%:{cluster.procs[victim].pid}",
        )
    }
    total = messages + len(slow) + len(quick)
    runs = _finished(herald, total, timeout=100)

    assert len(runs) == total, cluster.logs()
    assert {r["state"] for r in runs} == {"success"}, cluster.logs()
    assert not cluster.sql("SELECT id FROM task_instance WHERE state <> 'success' AND dag_id <> 'stuck_job'")
    events = [e for r in runs for e in r["event_ids"]]
    assert len(events) == len(set(events)) == total
    payloads = Counter(
        e["extra"]["payload"]["n"] for e in herald.cli_json("events", "list", "--limit", str(total + 100))
    )
    assert sorted(payloads) == list(range(total)) and set(payloads.values()) == {1}
    # Every try is still its first (no retry used); no try started twice unless its worker
    # was lost in between, each requeue in its history with the reason.
    assert cluster.sql("SELECT count(*) FROM task_instance WHERE try_number <> 1 AND dag_id <> 'stuck_job'") == [(0,)]
    starts = Counter(
        tuple(line.split()[:2]) for line in Path(herald.env["TEST_STARTS"]).read_text().splitlines() if line
    )
    assert {number for _, number in starts} == {"1"}
    requeues = dict(
        cluster.sql(
            "SELECT r.run_id, count(*) FROM task_requeue q JOIN task_instance t ON t.id = q.ti_id "
            "JOIN dag_run r ON r.id = t.run_pk WHERE t.task_id = 'work' GROUP BY r.run_id"
        )
    )
    # (a try killed before it wrote its line was requeued without a second line)
    assert [run_id for (run_id, _), n in starts.items() if n - 1 > requeues.get(run_id, 0)] == []
    reasons = [r for (r,) in cluster.sql("SELECT reason FROM task_requeue")]
    assert all("stopped sending heartbeats" in r for r in reasons), reasons
    if kill_pool:
        assert requeues, "the killed worker's tasks should have gone back to the queue"
    requeued = {int(i) for (i,) in cluster.sql("SELECT ti_id FROM task_requeue")}
    assert requeued <= held, (requeued, held)  # only what the dead worker held


@pytest.mark.broker("redis")
def test_celery_on_redis_runs_every_message_once_and_survives_a_killed_worker(redis_cluster: CeleryCluster) -> None:
    scenario(redis_cluster, 1000)


@pytest.mark.broker("rabbitmq")
def test_celery_on_rabbitmq_runs_every_message_once_and_survives_a_killed_worker(
    rabbitmq_cluster: CeleryCluster,
) -> None:
    scenario(rabbitmq_cluster, 100, lose_messages=True, kill_pool=False)


@pytest.mark.broker("redis")
def test_standalone_honours_the_celery_executor(redis_cluster: CeleryCluster) -> None:
    """`herald standalone` with HERALD_EXECUTOR=celery sends its tries to Celery workers."""
    cluster = redis_cluster
    herald = cluster.herald
    herald.write_dag("celery_dag", CELERY_DAG)
    cluster.start("standalone", "standalone", "--port", str(herald.port))
    cluster.start("worker-1", "worker", "--concurrency", "2")
    herald.wait_for(lambda: "[queues]" in (herald.home / "worker-1.log").read_text(), what="the Celery worker")
    herald.wait_for(
        lambda: "Tasks run on: Celery workers" in (herald.home / "standalone.log").read_text(),
        what="standalone started",
        timeout=60,
    )
    herald.publish("jobs", *[{"n": i} for i in range(20)])
    runs = _finished(herald, 20, timeout=60)
    assert {r["state"] for r in runs} == {"success"}, cluster.logs()
    # Every task ran in the Celery worker (its name carries the worker's pid), none in standalone.
    hosts = {str(h).split("/")[0] for (h,) in cluster.sql("SELECT hostname FROM task_instance")}
    assert {h.rsplit(":", 1)[1] for h in hosts} == {str(cluster.procs["worker-1"].pid)}, hosts


def test_standalone_with_celery_on_sqlite_says_what_to_do(tmp_path: Path) -> None:
    """Celery workers are other processes: standalone refuses SQLite for them, exit 2, no traceback."""
    herald = Herald(tmp_path / "home", f"sqlite:///{tmp_path}/herald.db")
    herald.env.update({"HERALD_EXECUTOR": "celery", "HERALD_CELERY_BROKER_URL": "redis://127.0.0.1:6379/0"})
    out = subprocess.run([HERALD, "standalone"], env=herald.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    assert "needs PostgreSQL" in out.stderr + out.stdout and "unset HERALD_EXECUTOR" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr + out.stdout
