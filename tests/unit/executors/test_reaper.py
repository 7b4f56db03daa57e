"""A worker ends whatever its tries leave behind (`herald.executors.reaper`), with real processes.

Each test runs a stand-in worker in a subprocess (it changes its process group and
becomes a subreaper, which the test runner must not) and drives it over its stdin.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from herald.executors.reaper import end_tree, running

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="subreapers and /proc as Linux has them")

#: generous: processes die in milliseconds, this only bounds a broken test
WAIT = 15.0

WORKER = r"""
import json, os, subprocess, sys, time
from herald.executors.reaper import WorkerKeeper

keeper = WorkerKeeper.start()


def out(value):
    print(json.dumps(value), flush=True)


def shell(script):
    return int(subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout)


def double_fork():
    # A classic daemon: fork, setsid, fork again, the middle process exits.
    read, write = os.pipe()
    first = os.fork()
    if first == 0:
        os.setsid()
        second = os.fork()
        if second == 0:
            time.sleep(1000)
            os._exit(0)
        os.write(write, str(second).encode())
        os._exit(0)
    os.waitpid(first, 0)
    os.close(write)
    return int(os.read(read, 64))


for line in sys.stdin:
    command = line.split()
    if command[0] == "leave":
        # what a careless task leaves: a subprocess never waited for, a sleep whose shell exited
        pids = [
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"]).pid,
            shell("sleep 1000 >/dev/null 2>&1 & echo $!"),
        ]
        if "escape" in command:  # and what leaves the worker's process group on purpose
            pids += [shell("setsid sleep 1000 >/dev/null 2>&1 & echo $!"), double_fork()]
        out(pids)
    elif command[0] == "stubborn":  # ignores SIGTERM, as does the sleep it runs
        out([subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 1000; sleep 1000"]).pid])
    elif command[0] == "fork":  # a forked copy of the worker (multiprocessing's fork does this)
        pid = os.fork()
        if pid == 0:
            time.sleep(1000)
            os._exit(0)
        out([pid])
    elif command[0] == "end":
        ended = keeper.end_leftovers(grace=float(command[1]))
        out({"ended": ended, "left": keeper.leftovers(), "guard": keeper.guard, "group": os.getpgrp()})
"""


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Worker:
    """The stand-in worker: a subprocess holding a `WorkerKeeper`."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.started: list[int] = []

    def ask(self, command: str) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        if isinstance(answer, list):
            self.started += answer
        return answer

    def gone(self, pids: list[int], what: str) -> None:
        wait_until(lambda: not any(running(p) for p in pids), what)


@pytest.fixture
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    # whatever a failed test left
    for pid in [w.proc.pid, *w.started]:
        if running(pid):
            os.kill(pid, signal.SIGKILL)
    w.proc.wait(WAIT)
    for stream in (w.proc.stdin, w.proc.stdout):
        if stream is not None:
            stream.close()


def test_what_a_try_left_is_ended_after_it_and_the_worker_stays(worker: Worker) -> None:
    pids = worker.ask("leave escape")
    assert len(pids) == 4 and all(running(p) for p in pids)
    report = worker.ask("end 5")
    assert len(report["ended"]) == 4 and all(f"(pid {p})" in " ".join(report["ended"]) for p in pids)
    assert report["left"] == []  # and reaped: no zombie stays under the worker
    assert not any(running(p) for p in pids)
    assert running(worker.proc.pid) and running(report["guard"])
    assert report["group"] == worker.proc.pid  # the worker leads a process group of its own
    assert os.getpgid(report["guard"]) == worker.proc.pid
    assert worker.ask("end 5")["ended"] == []  # nothing left: nothing to do


def test_a_leftover_that_ignores_sigterm_is_killed_after_the_grace(worker: Worker) -> None:
    pids = worker.ask("stubborn")
    wait_until(lambda: len(Path(f"/proc/{pids[0]}/task/{pids[0]}/children").read_text().split()) == 1, "its sleep")
    report = worker.ask("end 0.2")
    assert len(report["ended"]) == 2  # the shell and its sleep
    assert report["left"] == [] and not running(pids[0])


def test_a_killed_worker_takes_its_group_with_it(worker: Worker) -> None:
    """What a SIGKILL of Herald does (the worker's death signal), or the OOM killer: nothing runs in the worker."""
    worker.ask("leave")
    guard = worker.ask("end 5")["guard"]  # a try before: its leftovers were ended, the guard stays
    pids = worker.ask("leave") + worker.ask("fork")
    assert all(running(p) for p in pids)
    worker.proc.kill()
    worker.proc.wait(WAIT)
    # the forked copy does not hold the guard's pipe open: the guard sees the worker die
    worker.gone([*pids, guard], "the worker's group to end with it")


def test_a_worker_stopped_by_its_executor_ends_with_everything_under_it(worker: Worker) -> None:
    """A timeout or a cancel: what left the process group ends too."""
    pids = worker.ask("leave escape") + worker.ask("fork")
    assert all(running(p) for p in pids)
    end_tree(worker.proc.pid)
    assert worker.proc.wait(WAIT) == -signal.SIGKILL
    worker.gone(pids, "everything under the worker")
