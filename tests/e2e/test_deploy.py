"""docs/deploy.md's steps, as written, on a fresh PostgreSQL database.

The blocks of the page marked `deploy-test: setup` and `deploy-test: check` run
line by line in bash; between them each unit of `deploy/systemd/` starts as
systemd would start it: its `ExecStart` (the venv's path made this one's), with
the variables of `deploy/herald.env` (the database, DAGs folder, home and port
made this test's). A message then becomes a successful run, and every process
stops cleanly on the unit's `KillSignal`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port
from tests.e2e.standalone_per_db import drop_database, fresh_database

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
UNITS = sorted((ROOT / "deploy" / "systemd").glob("herald-*.service"))


def documented_block(marker: str) -> list[str]:
    """The command lines of the fenced block after `<!-- deploy-test: marker -->` in docs/deploy.md."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    found = re.search(rf"<!-- deploy-test: {marker} -->\s*```bash\n(.*?)```", text, re.S)
    assert found, f"docs/deploy.md has no block marked deploy-test: {marker}"
    lines = [line.strip() for line in found.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an EnvironmentFile (comments and blank lines skipped)."""
    return key_values(path.read_text())


def unit(path: Path) -> dict[str, str]:
    """The `[Service]` keys of a unit file."""
    return key_values(path.read_text().split("[Service]", 1)[1].split("\n[", 1)[0])


def key_values(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def run(line: str, env: dict[str, str]) -> str:
    done = subprocess.run(["bash", "-c", line], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{line!r} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_units_are_herald_commands() -> None:
    assert [u.name for u in UNITS] == [f"herald-{p}.service" for p in ("api", "scheduler", "triggerer", "worker")]
    for path in UNITS:
        service = unit(path)
        assert service["EnvironmentFile"] == "/etc/herald/herald.env"
        command = service["ExecStart"].split()
        assert command[0] == "/opt/herald/venv/bin/herald" and command[1] == path.stem.removeprefix("herald-")


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_the_documented_steps_make_a_working_installation(tmp_path: Path) -> None:
    url, name = fresh_database("postgres", tmp_path)
    dags = tmp_path / "dags"
    dags.mkdir()
    port = free_port()
    settings = env_file(ROOT / "deploy" / "herald.env")
    assert set(settings) >= {"HERALD_DATABASE_URL", "HERALD_DAGS_FOLDER", "HERALD_HOME", "HERALD_API_PORT"}
    settings |= {
        "HERALD_DATABASE_URL": url,
        "HERALD_DAGS_FOLDER": str(dags),
        "HERALD_HOME": str(tmp_path / "home"),
        "HERALD_API_HOST": "127.0.0.1",
        "HERALD_API_PORT": str(port),
        "HERALD_DAG_RELOAD_INTERVAL": "0.5",
    }
    env = {"PATH": f"{BIN}:{os.environ['PATH']}", "HOME": str(tmp_path), **settings}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        setup = [run(line, env) for line in documented_block("setup")]
        assert any(t.strip().startswith("hrld_") for out in setup for t in out.split()), "no token printed"
        assert (dags / "hello.py").exists()
        for path in UNITS:
            command = unit(path)["ExecStart"].replace("/opt/herald/venv/bin/", f"{BIN}/").split()
            with (tmp_path / f"{path.stem}.log").open("wb") as log:
                processes[path.stem] = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        check = documented_block("check")
        wait_for(lambda: _succeeds(check[0], env), processes, tmp_path, "the API's health")
        for line in check:
            run(line, env)

        def deployed_run_succeeded() -> bool:
            listed = run("herald runs list --dag deployment_check --output json", env)
            return any(r["state"] == "success" for r in json.loads(listed))

        wait_for(deployed_run_succeeded, processes, tmp_path, "a successful run of the check DAG")
    finally:
        codes = {}
        for stem, proc in processes.items():
            kill_signal = getattr(signal, unit(ROOT / "deploy" / "systemd" / f"{stem}.service")["KillSignal"])
            proc.send_signal(kill_signal)
        for stem, proc in processes.items():
            try:
                codes[stem] = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[stem] = "did not stop"
        drop_database(name)
    assert all(code == 0 for code in codes.values()), f"exit codes on the unit's KillSignal: {codes}"


def _succeeds(line: str, env: dict[str, str]) -> bool:
    return subprocess.run(["bash", "-c", line], cwd=ROOT, env=env, capture_output=True, timeout=30).returncode == 0


def wait_for(condition: object, processes: dict[str, subprocess.Popen[bytes]], logs: Path, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for stem, proc in processes.items():
            if proc.poll() is not None:
                raise AssertionError(f"{stem} exited {proc.returncode}:\n{(logs / f'{stem}.log').read_text()}")
        if condition():
            return
        time.sleep(0.3)
    shown = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs.glob("*.log"))
    raise AssertionError(f"no {what} within 120 s\n{shown}")
