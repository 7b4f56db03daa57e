"""The distribution as a user gets it: built from an sdist, installed into a clean venv.

`make dist` builds the sdist and the wheel (the wheel from the sdist, so a file
missing from the sdist fails here). The wheel then goes into a venv that has
nothing but pip, first alone (SQLite and `local://`: `herald standalone` runs a
DAG on a published message), then with each extra in turn, whose client library
must import and whose PostgreSQL database must migrate.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port
from tests.e2e.standalone_per_db import drop_database, fresh_database

# Building and installing into clean venvs is pip's and the disk's time (about 100 s on a
# quiet machine for the extras): the suite's 120 s limit is for Herald's own waits.
pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]
DIST_NAME = "herald_orchestrator"
# extra -> the modules it exists for (its client library and Herald's module that uses it)
EXTRAS = {
    "postgres": ["psycopg"],
    "sqs": ["aiobotocore", "jsonpath_ng", "herald.triggers.sqs"],
    "kinesis": ["aiobotocore", "herald.triggers.kinesis"],
    "kafka": ["aiokafka", "confluent_kafka", "herald.triggers.kafka"],
    "rabbitmq": ["aio_pika", "herald.triggers.rabbitmq"],
    "redis": ["redis", "herald.triggers.redis_streams"],
    "nats": ["nats", "herald.triggers.nats"],
    "mqtt": ["aiomqtt", "herald.triggers.mqtt"],
    "celery": ["celery", "herald.executors.celery_worker"],
}
DAG = """
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

inbox = Asset("inbox", watchers=[AssetWatcher("inbox_local", MessageQueueTrigger("local://inbox"))])


@dag(schedule=[inbox])
def from_the_wheel():
    @task
    def echo(triggering_asset_events):
        return triggering_asset_events[inbox][0].extra["payload"]

    echo()


from_the_wheel()
"""


def _clean_env() -> dict[str, str]:
    """The environment without what points into this checkout or its venv: the clean venv
    must find Herald only where pip put it (a PYTHONPATH to src/ would show the build's
    egg-info as installed already)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def _run(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    env = _clean_env() if env is None else env
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # Built from a copy of the source tree: two test processes building at once would
    # both write the checkout's egg-info, and a copy without the venv, caches and
    # build leftovers is what a fresh clone has.
    source = tmp_path_factory.mktemp("source") / "herald"
    leftovers = shutil.ignore_patterns(
        ".venv",
        ".git",
        "__pycache__",
        "*.egg-info",
        "build",
        "dist",
        ".herald",
        ".mypy_cache",
        ".ruff_cache",
        "results",
    )
    shutil.copytree(ROOT, source, ignore=leftovers)
    _run(sys.executable, "-m", "build", "--outdir", out, source)
    return out


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clean") / "venv"
    _run(sys.executable, "-m", "venv", path)
    return path / "bin"


def _wheel(dist: Path) -> Path:
    (wheel,) = dist.glob(f"{DIST_NAME}-*.whl")
    return wheel


def test_the_sdist_holds_what_the_wheel_needs(dist: Path) -> None:
    (sdist,) = dist.glob(f"{DIST_NAME}-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    for needed in ("src/herald/store/migrations/versions/0001_initial_schema.py", "src/herald/ui/static/", "README.md"):
        assert any(needed in n for n in names), f"{needed} is not in {sdist.name}"


def test_the_wheel_alone_runs_a_dag_on_sqlite(dist: Path, venv: Path, tmp_path: Path) -> None:
    constraints = ["-c", str(ROOT / "constraints.txt")]
    _run(venv / "python", "-m", "pip", "install", "--quiet", _wheel(dist), *constraints)
    assert _run(venv / "herald", "--version").strip().startswith("herald ")
    # Only the core dependencies: no broker client, no test tool.
    listed = json.loads(_run(venv / "python", "-m", "pip", "list", "--format", "json"))
    installed = {p["name"].lower() for p in listed}
    assert "herald-orchestrator" in installed
    for absent in ("psycopg", "aiokafka", "redis", "pytest", "playwright", "moto", "mypy"):
        assert absent not in installed, f"{absent} installed without being asked for"

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "wheel_dag.py").write_text(DAG)
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "HERALD_HOME": str(tmp_path / "home"),
        "HERALD_DAGS_FOLDER": str(dags),
        "HERALD_DAG_RELOAD_INTERVAL": "0.5",
    }
    log = (tmp_path / "standalone.log").open("wb")
    proc = subprocess.Popen([venv / "herald", "standalone", "--port", str(port)], env=env, stdout=log, stderr=log)
    try:
        _wait(lambda: _healthy(port), proc, tmp_path, "the API")
        _run(venv / "herald", "publish", "local://inbox", '{"from": "wheel"}', env=env)

        def succeeded() -> bool:
            runs = json.loads(_run(venv / "herald", "runs", "list", "--output", "json", env=env))
            return any(r["dag_id"] == "from_the_wheel" and r["state"] == "success" for r in runs)

        _wait(succeeded, proc, tmp_path, "a successful run")
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def test_each_extra_installs_and_its_clients_import(dist: Path, venv: Path, tmp_path: Path) -> None:
    wheel = _wheel(dist)
    constraints = ["-c", str(ROOT / "constraints.txt")]
    for extra, modules in EXTRAS.items():
        _run(venv / "python", "-m", "pip", "install", "--quiet", f"{wheel}[{extra}]", *constraints)
        _run(venv / "python", "-c", "; ".join(f"import {m}" for m in modules))
    # With the postgres extra, the packaged migrations make a PostgreSQL database.
    url, name = fresh_database("postgres", tmp_path)
    try:
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "HERALD_DATABASE_URL": url}
        _run(venv / "herald", "db", "migrate", env=env)
        status = json.loads(_run(venv / "herald", "status", "--output", "json", env=env))
        assert status["database"]["state"] == "ready", status
    finally:
        drop_database(name)


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _wait(condition: object, proc: subprocess.Popen[bytes], home: Path, what: str, timeout: float = 90) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"herald standalone exited: {(home / 'standalone.log').read_text()}")
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout}s: {(home / 'standalone.log').read_text()}")
