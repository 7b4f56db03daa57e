"""End-to-end fixtures: `herald standalone` as a real process, read back through the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from herald.cli.main import app

HERALD = str(Path(sys.executable).with_name("herald"))


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PortTaken(Exception):
    """Another process listens on the port chosen for Herald's API."""


class Herald:
    """One Herald installation: a home, a DAGs folder, a database, and its standalone process."""

    def __init__(self, home: Path, database_url: str) -> None:
        self.home = home
        self.dags = home / "dags"
        self.dags.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.env = {
            **os.environ,
            "HERALD_HOME": str(home),
            "HERALD_DAGS_FOLDER": str(self.dags),
            "HERALD_DATABASE_URL": database_url,
            "HERALD_WORKERS": "2",
            "HERALD_DAG_RELOAD_INTERVAL": "0.5",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = home / "standalone.log"
        self._runner = CliRunner()

    # -- DAG files ------------------------------------------------------------------------

    def write_dag(self, name: str, source: str) -> Path:
        """Write a DAG file into the DAGs folder."""
        path = self.dags / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return path

    # -- the process ----------------------------------------------------------------------

    def start(self, extra_env: dict[str, str] | None = None, wait: bool = True) -> None:
        """Start `herald standalone` and (unless `wait=False`) wait until its API answers.

        Tests running side by side pick their ports apart (`free_port`): when another
        process took this one in between, Herald exits saying so and starts again on a
        new port (three tries).
        """
        for _ in range(2):
            try:
                return self._start(extra_env, wait)
            except PortTaken:
                self.port = free_port()
        return self._start(extra_env, wait)

    def _start(self, extra_env: dict[str, str] | None, wait: bool) -> None:
        env = {**self.env, **(extra_env or {})}
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [HERALD, "standalone", "--port", str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.home,
            )
        deadline = time.monotonic() + 60
        while wait and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "the API cannot listen on" in self.log.read_bytes()[offset:].decode(errors="replace"):
                    raise PortTaken(self.port)
                raise AssertionError(f"herald standalone exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        if not wait:
            return
        raise AssertionError(f"herald standalone did not answer within 60s:\n{self.output()}")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        """Stop the process with `sig` and return its exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"herald standalone did not stop on {sig}:\n{self.output()}") from None
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        """kill -9, as a crash would."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def output(self) -> str:
        """What the standalone process printed so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    # -- the CLI --------------------------------------------------------------------------

    def _made(self) -> None:
        """Create and migrate a SQLite database not made yet (the CLI never creates one by itself)."""
        url = self.env["HERALD_DATABASE_URL"]
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
            env = {k: v for k, v in self.env.items() if k.startswith("HERALD_")}
            made = self._runner.invoke(app, ["db", "migrate"], env=env)
            assert made.exit_code == 0, made.output

    def cli(self, *args: str) -> tuple[int, str]:
        """Run a `herald` command in this process (Typer's runner); returns (exit code, output)."""
        self._made()
        env = {k: v for k, v in self.env.items() if k.startswith("HERALD_")}
        result = self._runner.invoke(app, list(args), env=env)
        return result.exit_code, result.output

    def cli_json(self, *args: str) -> Any:
        """Run a listing with `--output json` and parse it."""
        code, out = self.cli(*args, "--output", "json")
        assert code == 0, f"herald {' '.join(args)} exited {code}:\n{out}"
        return json.loads(out)

    def run_cli_process(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `herald ...` as a real process (for exit codes and stderr)."""
        self._made()
        return subprocess.run([HERALD, *args], env=self.env, capture_output=True, text=True, timeout=60)

    def publish(self, queue: str, *bodies: str | bytes | dict[str, Any]) -> None:
        """Publish messages to `local://queue` through the CLI's publisher."""
        from herald.config import Settings
        from herald.publishing import local_publish, to_bytes

        settings = Settings(home=self.home, database_url=self.env["HERALD_DATABASE_URL"])
        local_publish(queue, [to_bytes(b) for b in bodies], settings=settings)

    def runs(self, dag: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        """`herald runs list` as JSON."""
        args = ["runs", "list", "--limit", "100000"]
        if dag:
            args += ["--dag", dag]
        if state:
            args += ["--state", state]
        result: list[dict[str, Any]] = self.cli_json(*args)
        return result

    def wait_for(self, check: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
        """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"herald exited while waiting for {what}:\n{self.output()}")
            time.sleep(0.2)
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what}; last value {value!r}\n{self.output()[-3000:]}"
        )

    def wait_runs(self, count: int, dag: str | None = None, timeout: float = 60) -> list[dict[str, Any]]:
        """Wait until `count` runs (of `dag`) have finished; return all runs."""

        def finished() -> list[dict[str, Any]] | None:
            runs = self.runs(dag)
            done = [r for r in runs if r["state"] in ("success", "failed")]
            return runs if len(done) >= count else None

        result: list[dict[str, Any]] = self.wait_for(finished, timeout, f"{count} finished run(s) of {dag}")
        return result


@pytest.fixture
def herald(tmp_path: Path, database_url: str) -> Iterator[Herald]:
    """A Herald home on SQLite or PostgreSQL (the test runs on both); stopped at the end."""
    h = Herald(tmp_path / "home", database_url)
    yield h
    if h.proc is not None:
        h.stop()
