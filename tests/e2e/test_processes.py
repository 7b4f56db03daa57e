"""By default a try's child processes end with the try: when it returns, times out, its run times
out, or Herald is killed.

Also: a fresh standalone keeps its home, database and wake-up socket private to its user.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Herald

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups as Linux has them")

DAGS = """
import os, subprocess, sys, time
from datetime import timedelta

from herald import DAG, BashOperator, task

MARKS = "@MARKS@"


def leave(name, escape=True):
    # What a careless task leaves behind: a Python subprocess, a sleep whose shell exits at
    # once (a daemon's double fork), and unless `escape` is False one that leaves the
    # task's process group (setsid).
    python = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
    daemon = subprocess.run(["sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True)
    pids = [os.getpid(), python.pid, int(daemon.stdout)]
    if escape:
        left = subprocess.run(
            ["sh", "-c", "setsid sleep 1000 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True
        )
        pids.append(int(left.stdout))
    path = os.path.join(MARKS, name)
    with open(path + ".tmp", "w") as fh:
        fh.write(" ".join(map(str, pids)))
    os.rename(path + ".tmp", path)


def bash_leaving(name):
    return (
        f"sleep 1000 >/dev/null 2>&1 & echo $$ $! > {MARKS}/{name}.tmp && mv {MARKS}/{name}.tmp {MARKS}/{name}"
    )


@task
def returns():
    leave("returns")
    return "done"


with DAG("try_ends", schedule=None):
    returns()
    BashOperator(task_id="bash_returns", bash_command=bash_leaving("bash_returns"))


@task(execution_timeout=timedelta(seconds=3))
def too_slow():
    leave("too_slow")
    time.sleep(600)


with DAG("try_times_out", schedule=None):
    too_slow()


@task
def stuck():
    leave("stuck")
    time.sleep(600)


with DAG("run_times_out", schedule=None, dagrun_timeout=timedelta(seconds=3)):
    stuck()


@task
def held():
    # What leaves the group escapes a SIGKILL of Herald (ADR 0004): not tested here.
    leave("held", escape=False)
    time.sleep(600)


with DAG("herald_killed", schedule=None):
    held()
    BashOperator(task_id="bash_held", bash_command=bash_leaving("bash_held") + " && sleep 600")
"""


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped counts as ended)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return status.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_what_a_try_started_never_outlives_it(herald: Herald, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    herald.write_dag("children", DAGS.replace("@MARKS@", str(marks)))
    herald.start(extra_env={"HERALD_WORKERS": "5"})  # the default settings: nothing to turn on
    herald.wait_for(lambda: len(herald.cli_json("dags", "list")) == 4, what="the DAGs")

    def pids(*names: str) -> list[int]:
        herald.wait_for(lambda: all((marks / n).exists() for n in names), what=f"{names} to start their children")
        found = [int(p) for n in names for p in (marks / n).read_text().split()]
        assert len(found) >= 2 * len(names)
        return found

    def gone(found: list[int], what: str) -> None:
        herald.wait_for(lambda: not any(alive(p) for p in found), timeout=30, what=what)

    runs = {name: herald.cli_json("dags", "trigger", name)["run_id"] for name in ("try_ends", "try_times_out")}
    runs["run_times_out"] = herald.cli_json("dags", "trigger", "run_times_out")["run_id"]
    herald.cli_json("dags", "trigger", "herald_killed")

    # the try returns (Python task and BashOperator): what it started is ended with it
    ended = pids("returns", "bash_returns")
    herald.wait_runs(1, "try_ends")
    shown = herald.cli_json("runs", "show", runs["try_ends"])
    assert shown["state"] == "success"
    gone(ended[1:], "the children of tries that returned")
    assert alive(ended[0])  # the worker that ran the try stays, ready for the next one
    log = herald.cli_json("tasks", "logs", runs["try_ends"], "returns")["log"]
    assert "[herald] ended 3 process(es) the task left running" in log

    # execution_timeout: the try is killed, and its children with it
    timed_out = pids("too_slow")
    herald.wait_runs(1, "try_times_out")
    task_row = herald.cli_json("runs", "show", runs["try_times_out"])["tasks"][0]
    assert task_row["state"] == "failed" and "timed out" in task_row["error"]
    gone(timed_out, "the children of a try past its execution_timeout")

    # dagrun_timeout: the scheduler cancels the running try (Executor.cancel)
    cancelled = pids("stuck")
    herald.wait_runs(1, "run_times_out")
    assert herald.cli_json("runs", "show", runs["run_times_out"])["state"] == "failed"
    gone(cancelled, "the children of a try cancelled by dagrun_timeout")

    # a SIGKILL of Herald: nothing runs its handlers, and still no child is left
    held = pids("held", "bash_held")
    assert all(alive(p) for p in held)
    # the workers' parent: the fork server they are forked from (it must not outlive Herald either)
    server = int(Path(f"/proc/{held[0]}/stat").read_text().rsplit(")", 1)[1].split()[1])
    herald.kill()
    gone([*held, server], "the workers, their fork server and the tries' children after a SIGKILL of Herald")

    # what the standalone made or found is private to its user (an existing 0755 home is tightened)
    assert mode(herald.home) == 0o700
    url = herald.env["HERALD_DATABASE_URL"]
    if url.startswith("sqlite"):
        database = Path(url.removeprefix("sqlite:///"))
        assert mode(database) == 0o600
        socket = database.parent / f"{database.name}.sock"  # stays after a SIGKILL; replaced at the next start
        assert stat.S_ISSOCK(os.stat(socket).st_mode) and mode(socket) == 0o600
