"""Side by side with Apache Airflow 3.1: the SQS example DAG, the same moto queue, the same machine.

    .venv/bin/python benchmarks/airflow_compare.py --latency 10 --drain 1000

Installs Airflow into its own venv (benchmarks/results/airflow/venv, git-ignored)
on first use:
`pip install 'apache-airflow==3.1.*' 'apache-airflow-providers-amazon[aiobotocore]'
apache-airflow-providers-common-messaging`.
Airflow runs on SQLite with LocalExecutor as four processes bound to
127.0.0.1 (api-server, scheduler, dag-processor, triggerer; never
`airflow standalone`), the DAG of Airflow's event-driven guide
(`MessageQueueTrigger(scheme="sqs", ...)` -> AssetWatcher -> `@dag(schedule=[asset])`),
twice: on the trigger's defaults (waiter_delay=60, wait_time_seconds=1,
max_messages=5) and on the fastest settings its documentation allows
(waiter_delay=1, wait_time_seconds=20, max_messages=10, scheduler heartbeat 1 s,
idle sleep 0.1 s). DAG-file parsing intervals are shortened in both (they only
shorten the set-up). Herald runs `herald standalone` on SQLite with the same
DAG ported (imports changed) on the same queue. For each: latency publish ->
first line of the task, one message at a time, and the time to drain 1,000
messages published at once (SendMessageBatch), capped by `--drain-timeout`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, Stamps, free_port, herald, moto_server, sqs_client, summary_ms, write_result

AIRFLOW_VENV = RESULTS / "airflow" / "venv"
AIRFLOW_PACKAGES = [
    "apache-airflow==3.1.*",
    "apache-airflow-providers-amazon[aiobotocore]",
    "apache-airflow-providers-common-messaging",
]

# The DAG of Airflow's guide ("Event-driven scheduling", the SQS example), recording start times.
AIRFLOW_DAG = """
import json, os, time
from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
from airflow.sdk import Asset, AssetWatcher, dag, task

trigger = MessageQueueTrigger(scheme="sqs", sqs_queue={queue_url!r}, aws_conn_id="aws_default", {options})
asset = Asset("sqs_queue_asset", watchers=[AssetWatcher(name="sqs_watcher", trigger=trigger)])

@dag(schedule=[asset])
def example_event_driven_dag():
    @task
    def process_message(**context):
        now = time.time()  # the first line of the task's own code
        lines = []
        for event in context["triggering_asset_events"][asset]:
            for message in event.extra["payload"]["message_batch"]:
                lines.append(f"{{json.loads(message['Body'])['id']}} {{now!r}}\\n")
        fd = os.open({stamps!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, "".join(lines).encode())
        os.close(fd)

    process_message()

example_event_driven_dag()
"""

HERALD_DAG = """
import json, os, time
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

trigger = MessageQueueTrigger({url!r})
asset = Asset("sqs_queue_asset", watchers=[AssetWatcher(name="sqs_watcher", trigger=trigger)])

@dag(schedule=[asset])
def example_event_driven_dag():
    @task
    def process_message(**context):
        now = time.time()  # the first line of the task's own code
        lines = []
        for event in context["triggering_asset_events"][asset]:
            lines.append(f"{{event.extra['payload']['id']}} {{now!r}}\\n")
        fd = os.open({stamps!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, "".join(lines).encode())
        os.close(fd)

    process_message()

example_event_driven_dag()
"""

CONFIGS: dict[str, dict[str, Any]] = {
    "airflow_defaults": {"options": "", "env": {}},
    "airflow_fastest": {
        "options": "waiter_delay=1, wait_time_seconds=20, max_messages=10",
        "env": {
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.1",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        },
    },
}


def ensure_airflow() -> Path:
    """The venv's `airflow`, installing it first if needed."""
    exe = AIRFLOW_VENV / "bin" / "airflow"
    if exe.exists():
        return exe
    print(f"installing Airflow 3.1 into {AIRFLOW_VENV} (a few minutes, once)...")
    subprocess.run([sys.executable, "-m", "venv", str(AIRFLOW_VENV)], check=True)
    pip = [str(AIRFLOW_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, *AIRFLOW_PACKAGES], check=True)
    return exe


def send(client: Any, queue_url: str, keys: list[str]) -> dict[str, float]:
    """SendMessageBatch in tens; each message's time is taken just before its call."""
    published = {}
    for i in range(0, len(keys), 10):
        chunk = keys[i : i + 10]
        t0 = time.time()
        client.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(j), "MessageBody": json.dumps({"id": k})} for j, k in enumerate(chunk)],
        )
        for k in chunk:
            published[k] = t0
    return published


def empty_queue(client: Any, queue_url: str) -> None:
    """Delete what an earlier side left (PurgeQueue is allowed once a minute only)."""
    while True:
        got = client.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            return
        client.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
        )


def run_side(
    client: Any, queue_url: str, stamps: Stamps, latency_n: int, drain_n: int, drain_timeout: float, label: str
) -> dict[str, Any]:
    """Warm up, then latency one message at a time, then drain `drain_n` at once."""
    tag = uuid.uuid4().hex[:6]
    probe = f"{label}-{tag}-probe"
    send(client, queue_url, [probe])
    if stamps.wait_for(probe, timeout=240, interval=0.01) is None:
        raise RuntimeError(f"{label}: the probe message never reached a task in 240 s")
    latencies = []
    timeouts = 0
    for i in range(latency_n):
        time.sleep(random.uniform(0.5, 2.0))
        key = f"{label}-{tag}-lat{i}"
        t0 = send(client, queue_url, [key])[key]
        started = stamps.wait_for(key, timeout=150, interval=0.002)
        if started is None:
            timeouts += 1
            continue
        latencies.append(started - t0)
        print(f"  {label} latency {i + 1}/{latency_n}: {1000 * (started - t0):.0f} ms", flush=True)
    keys = [f"{label}-{tag}-d{i}" for i in range(drain_n)]
    published = send(client, queue_url, keys)
    first = min(published.values())
    deadline = time.monotonic() + drain_timeout
    while time.monotonic() < deadline and any(k not in stamps.seen for k in keys):
        stamps.poll()
        time.sleep(0.05)
    done = [stamps.seen[k] for k in keys if k in stamps.seen]
    drained = len(done) == drain_n
    drain_seconds = (max(done) - first) if done else None
    print(
        f"  {label} drain: {len(done)}/{drain_n} in "
        f"{f'{drain_seconds:.1f} s' if drain_seconds else '-'}{'' if drained else f' (cut at {drain_timeout:g} s)'}",
        flush=True,
    )
    return {
        "latency": {**summary_ms(latencies), "timeouts": timeouts},
        "drain": {
            "messages": drain_n,
            "started": len(done),
            "drained": drained,
            "seconds": round(drain_seconds, 2) if drain_seconds else None,
            "cut_at_seconds": None if drained else drain_timeout,
            "messages_per_s": round(len(done) / drain_seconds, 1) if drain_seconds else None,
            "drain_latency": summary_ms([stamps.seen[k] - published[k] for k in keys if k in stamps.seen]),
        },
    }


def airflow_side(
    exe: Path, config: str, moto_port: int, queue_url: str, latency_n: int, drain_n: int, drain_timeout: float
) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix=f"airflow-bench-{config}-"))
    dags = home / "dags"
    dags.mkdir()
    stamps_path = home / "stamps.txt"
    spec = CONFIGS[config]
    (dags / "sqs_event_driven.py").write_text(
        textwrap.dedent(AIRFLOW_DAG.format(queue_url=queue_url, options=spec["options"], stamps=str(stamps_path)))
    )
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "AIRFLOW"))},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"region_name": "us-east-1", "endpoint_url": f"http://127.0.0.1:{moto_port}"},
            }
        ),
        **spec["env"],
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([str(exe), "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
        for args in (
            ["api-server", "-H", "127.0.0.1", "-p", str(port)],
            ["scheduler", "--skip-serve-logs"],
            ["dag-processor"],
            ["triggerer", "--skip-serve-logs"],
        ):
            log = (home / f"{args[0]}.log").open("ab")
            procs.append(
                subprocess.Popen(
                    [str(exe), *args], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=home, start_new_session=True
                )
            )
        stamps = Stamps(stamps_path)
        result = run_side(sqs_client(moto_port), queue_url, stamps, latency_n, drain_n, drain_timeout, config)
        return {"settings": spec["options"] or "defaults", "env": spec["env"], **result}
    except Exception:
        for log in sorted(home.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        # Each Airflow process leads its own process group (its task runners included).
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        shutil.rmtree(home, ignore_errors=True)


def herald_side(moto_port: int, queue_url: str, latency_n: int, drain_n: int, drain_timeout: float) -> dict[str, Any]:
    account, name = queue_url.rstrip("/").split("/")[-2:]
    url = f"sqs+http://127.0.0.1:{moto_port}/{account}/{name}?region=us-east-1"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    with herald("vs-airflow") as h:
        h.write_dag("sqs_event_driven", HERALD_DAG.format(url=url, stamps=str(h.stamps_path)))
        h.start_standalone(env=env)
        h.watchers_running(1)
        return {
            "settings": "defaults",
            **run_side(
                sqs_client(moto_port), queue_url, Stamps(h.stamps_path), latency_n, drain_n, drain_timeout, "herald"
            ),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=int, default=10, help="messages sent one at a time (Airflow fastest, Herald)")
    parser.add_argument("--latency-defaults", type=int, default=3, help="the same for Airflow on its defaults")
    parser.add_argument("--drain", type=int, default=1000)
    parser.add_argument("--drain-timeout", type=float, default=240)
    parser.add_argument("--sides", default="herald,airflow_fastest,airflow_defaults")
    parser.add_argument(
        "--merge", action="store_true", help="keep the other sides of an earlier airflow_compare.json (re-run one side)"
    )
    args = parser.parse_args()
    exe = ensure_airflow()
    version = subprocess.run([str(exe), "version"], capture_output=True, text=True).stdout.strip().splitlines()
    sides: dict[str, Any] = {}
    earlier = RESULTS / "airflow_compare.json"
    if args.merge and earlier.exists():
        sides = json.loads(earlier.read_text())["sides"]
        for side in args.sides.split(","):
            sides.pop(side, None)
    with moto_server() as port:
        client = sqs_client(port)
        queue_url = client.create_queue(QueueName="airflow-vs-herald")["QueueUrl"]
        for side in args.sides.split(","):
            empty_queue(client, queue_url)
            print(f"{side}:", flush=True)
            try:
                if side == "herald":
                    sides[side] = herald_side(port, queue_url, args.latency, args.drain, args.drain_timeout)
                else:
                    n = args.latency_defaults if side == "airflow_defaults" else args.latency
                    sides[side] = airflow_side(exe, side, port, queue_url, n, args.drain, args.drain_timeout)
            except Exception as exc:
                sides[side] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
                print(f"  {side} FAILED: {sides[side]['error'][:300]}")
    ratios: dict[str, Any] = {}
    he = sides.get("herald", {})
    for side in ("airflow_fastest", "airflow_defaults"):
        af = sides.get(side, {})
        if "latency" in af and "latency" in he and he["latency"]["n"] and af["latency"]["n"]:
            ratios[side] = {
                "p50_latency": round(af["latency"]["p50_ms"] / he["latency"]["p50_ms"], 1),
                "p99_latency": round(af["latency"]["p99_ms"] / he["latency"]["p99_ms"], 1),
            }
            if af["drain"]["seconds"] and he["drain"]["seconds"]:
                # An undrained side's rate so far, against Herald's.
                ratios[side]["drain_rate"] = round(he["drain"]["messages_per_s"] / af["drain"]["messages_per_s"], 1)
    for side, r in sides.items():
        if "latency" in r:
            lat, dr = r["latency"], r["drain"]
            print(
                f"{side:17s} latency p50 {lat['p50_ms']:9.1f} ms  p99 {lat['p99_ms']:9.1f} ms  (n={lat['n']}); "
                f"drain {dr['started']}/{dr['messages']} in {dr['seconds']} s"
                f"{'' if dr['drained'] else ' (not drained: cut)'}"
            )
    for side, r in ratios.items():
        print(f"ratio {side} / herald: {r}")
    for side in args.sides.split(","):
        if side in sides:
            sides[side]["measured"] = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_result("airflow_compare", {"airflow_version": version, "sides": sides, "ratios": ratios})


if __name__ == "__main__":
    main()
