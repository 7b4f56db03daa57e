"""What every benchmark shares: a Herald process, brokers on 127.0.0.1, timing, results.

Latency is measured on this machine's clock, from the publish call (the
publisher records `time.time()` just before calling `publish`) to the first
line of the task's own code (the task records `time.time()` first thing and
appends `ID TIME` to a file with one `write`, atomic under O_APPEND).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent
HERALD = str(BIN / "herald")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.integration.kafka_mock


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def summary_ms(latencies_s: list[float]) -> dict[str, float]:
    """p50/p90/p99/max of latencies given in seconds, in milliseconds."""
    return {
        "n": len(latencies_s),
        "p50_ms": round(percentile(latencies_s, 50) * 1000, 2),
        "p90_ms": round(percentile(latencies_s, 90) * 1000, 2),
        "p99_ms": round(percentile(latencies_s, 99) * 1000, 2),
        "max_ms": round(max(latencies_s) * 1000, 2) if latencies_s else float("nan"),
    }


def machine() -> dict[str, Any]:
    """Where the figures were taken."""
    cpu = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_at_start": load,
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write `benchmarks/results/NAME.json` (and print where)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "git_commit": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        **result,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"  -> {path.relative_to(ROOT)}")
    return path


# -- the DAG every latency/throughput benchmark runs -------------------------------------------

TASK_DAG = """
import os, time
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

_STAMPS = {stamps!r}

{assets}

@dag(schedule={schedule}, dag_id={dag_id!r})
def {dag_id}():
    @task
    def first(triggering_asset_events):
        now = time.time()  # the first line of the task's own code
        lines = []
        for events in triggering_asset_events.values():
            for e in events:
                p = e.extra["payload"]
                lines.append(f"{{p['id'] if isinstance(p, dict) else p}} {{now!r}}\\n")
        fd = os.open(_STAMPS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, "".join(lines).encode())
        finally:
            os.close(fd)
    first()

{dag_id}()
"""


def task_dag(stamps: Path, urls: list[str], dag_id: str = "bench") -> str:
    """A one-task DAG scheduled on one asset per URL (any of them), recording start times."""
    assets = "\n".join(
        f"a{i} = Asset({f'{dag_id}_a{i}'!r}, watchers=[AssetWatcher(name={f'{dag_id}_w{i}'!r}, "
        f"trigger=MessageQueueTrigger({url!r}))])"
        for i, url in enumerate(urls)
    )
    schedule = " | ".join(f"a{i}" for i in range(len(urls)))
    return TASK_DAG.format(stamps=str(stamps), assets=assets, schedule=schedule, dag_id=dag_id)


class Stamps:
    """Reads the `ID TIME` lines the tasks append, incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: dict[str, float] = {}
        self._offset = 0
        self._partial = b""

    def poll(self) -> int:
        """Read new lines; returns how many ids are known."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return 0
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if line:
                key, _, stamp = line.decode().partition(" ")
                self.seen.setdefault(key, float(stamp))
        return len(self.seen)

    def wait_for(self, key: str, timeout: float, interval: float = 0.0005) -> float | None:
        """The start time recorded for `key`, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if key in self.seen:
                return self.seen[key]
            if time.monotonic() > deadline:
                return None
            time.sleep(interval)

    def wait_count(self, n: int, timeout: float, interval: float = 0.01) -> bool:
        """Wait until `n` ids are known."""
        deadline = time.monotonic() + timeout
        while self.poll() < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(interval)
        return True


# -- a Herald process --------------------------------------------------------------------------


class Herald:
    """`herald standalone` (or another `herald` command) in a home of its own."""

    def __init__(self, name: str, database_url: str | None = None, workers: int = 2) -> None:
        self.home = Path(tempfile.mkdtemp(prefix=f"herald-bench-{name}-"))
        self.dags = self.home / "dags"
        self.dags.mkdir()
        self.port = free_port()
        self.env = {
            **os.environ,
            "HERALD_HOME": str(self.home),
            "HERALD_DAGS_FOLDER": str(self.dags),
            "HERALD_WORKERS": str(workers),
            "HERALD_DAG_RELOAD_INTERVAL": "60",
        }
        if database_url:
            self.env["HERALD_DATABASE_URL"] = database_url
        self.procs: list[subprocess.Popen[bytes]] = []
        self.groups: set[int] = set()
        self.stamps_path = self.home / "stamps.txt"

    def use_env(self) -> None:
        """Make this process's `herald.publish` (local://) use this Herald's database."""
        for key, value in self.env.items():
            if key.startswith("HERALD_"):
                os.environ[key] = value

    def write_dag(self, name: str, source: str) -> None:
        (self.dags / f"{name}.py").write_text(textwrap.dedent(source))

    def spawn(
        self, *args: str, env: dict[str, str] | None = None, new_session: bool = False
    ) -> subprocess.Popen[bytes]:
        """Start `herald ARGS...`; with `new_session`, in a process group of its own (see `stop`)."""
        log = (self.home / f"{args[0]}-{len(self.procs)}.log").open("ab")
        proc = subprocess.Popen(
            [HERALD, *args],
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.home,
            start_new_session=new_session,
        )
        self.procs.append(proc)
        if new_session:
            self.groups.add(proc.pid)
        return proc

    def start_standalone(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = self.spawn("standalone", "--port", str(self.port), env=env)
        self.wait_health(proc)
        return proc

    def wait_health(self, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"herald exited with {proc.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"herald did not answer within {timeout}s:\n{self.logs()}")

    def watchers_running(self, n: int, timeout: float = 60) -> None:
        """Wait until `n` watchers report `running` (read from the database)."""
        from sqlalchemy import func, select

        from herald.config import Settings
        from herald.store import tables as t
        from herald.store.db import make_engine

        settings = Settings(home=self.home, database_url=self.env.get("HERALD_DATABASE_URL"))
        engine = make_engine(settings.db_url, pool_size=0)
        deadline = time.monotonic() + timeout
        running = 0
        try:
            while time.monotonic() < deadline:
                try:
                    with engine.connect() as conn:
                        running = conn.execute(
                            select(func.count()).select_from(t.watcher).where(t.watcher.c.state == "running")
                        ).scalar_one()
                except Exception:  # the schema is not there yet
                    running = 0
                if running >= n:
                    return
                time.sleep(0.2)
        finally:
            engine.dispose()
        raise RuntimeError(f"only {running} of {n} watchers running after {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in sorted(self.home.glob("*.log")))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.pid in self.groups:
                # What a process in a group of its own left behind (a Celery worker's pool):
                # Linux reuses no pid while a group carries it, so this is still that group.
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
        self.procs.clear()
        self.groups.clear()

    def cleanup(self) -> None:
        self.stop()
        if not os.environ.get("HERALD_BENCH_KEEP"):
            shutil.rmtree(self.home, ignore_errors=True)


@contextmanager
def herald(name: str, database_url: str | None = None, workers: int = 2) -> Iterator[Herald]:
    h = Herald(name, database_url, workers)
    try:
        yield h
    finally:
        h.cleanup()


# -- brokers -----------------------------------------------------------------------------------


@contextmanager
def moto_server() -> Iterator[int]:
    """moto's SQS server on a free port of 127.0.0.1."""
    exe = BIN / "moto_server"
    port = free_port()
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def sqs_client(port: int) -> Any:
    import boto3

    return boto3.client(
        "sqs",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# -- CPU and memory of a process tree (from /proc) ---------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by `pids`."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def rss_mib(pid: int) -> float:
    """Resident memory of one process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
