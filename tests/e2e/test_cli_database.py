"""The CLI never creates a database it was not asked to, and says which one it uses."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from herald.cli.main import app
from tests.e2e.conftest import HERALD


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def run(home: Path, cwd: Path, *args: str) -> Ran:
    """`herald ARGS` in this process (a real process costs seconds here), from `cwd`, with only HERALD_HOME set."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("HERALD_")}
    env["HERALD_HOME"] = str(home)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        result = CliRunner().invoke(app, list(args), env=env)
    return Ran(result.exit_code, result.stdout, result.stderr)


def test_without_a_database_commands_fail_with_a_hint_and_create_nothing(tmp_path: Path) -> None:
    home = tmp_path / "not-a-herald"
    for args in (["runs", "list"], ["publish", "local://orders", "{}"], ["variables", "list"]):
        result = run(home, tmp_path, *args)
        assert result.returncode == 1, result
        assert f"there is no Herald database at {home / 'herald.db'}" in result.stderr
        assert "hint:" in result.stderr and "herald status" in result.stderr
        assert "Traceback" not in result.stderr
    assert not home.exists()  # nothing was created, not even the folder
    assert not (tmp_path / ".herald").exists()

    shown = run(home, tmp_path, "status")
    assert shown.returncode == 0, shown.stderr
    assert str(home / "herald.db") in shown.stdout and "missing" in shown.stdout
    assert str(home / "dags") in shown.stdout
    assert not home.exists()

    # asked to: `db migrate` makes it (private to its user), then the commands work and status says so
    made = run(home, tmp_path, "db", "migrate")
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "herald.db").stat().st_mode) == 0o600
    listed = run(home, tmp_path, "runs", "list", "--output", "json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    info = json.loads(run(home, tmp_path, "status", "--output", "json").stdout)
    assert info["database"]["state"] == "ready" and info["database"]["url"].endswith(f"{home}/herald.db")
    assert info["home"] == str(home) and info["dags_folder"] == str(home / "dags")


def test_version(tmp_path: Path) -> None:
    from herald import __version__

    result = subprocess.run([HERALD, "--version"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"herald {__version__}"
