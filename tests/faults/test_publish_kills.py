"""Publishes from another process while Herald runs, and while it is killed: every message exactly one run.

The publisher is a process of its own calling `herald.publishing.local_publish`
once per message, as a producer would. On SQLite its messages go through the
running Herald's publish socket (group commit, a reply only after the commit);
while Herald is down it writes the database itself. On PostgreSQL it always
writes the database. Herald is killed with SIGKILL while they flow, on SQLite
first right after a group commit and before its replies
(`HERALD_FAULT=publish_after_commit`): the publisher then writes those messages
again with the same keys.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from herald.store import tables as t
from tests.e2e.conftest import Herald
from tests.faults.test_kills import DAG, HEADER, Ledger

PUBLISHER = """
import json, sys
from herald.publishing import local_publish
from herald.triggerer import publish_socket

answered = 0
send = publish_socket.send


def counting(*args, **kwargs):
    global answered
    ids = send(*args, **kwargs)
    answered += ids is not None
    return ids


publish_socket.send = counting
start, n = int(sys.argv[1]), int(sys.argv[2])
for i in range(start, start + n):
    local_publish("jobs", [json.dumps({"n": i}).encode()])
print(json.dumps({"through_herald": answered}))
"""


@pytest.fixture
def ledger(herald: Herald) -> Any:
    led = Ledger(herald.env["HERALD_DATABASE_URL"])
    yield led
    led.close()


def publisher(herald: Herald, start: int, n: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, str(start), str(n)],
        env=herald.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> dict[str, int]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    result: dict[str, int] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.mark.timeout(600)
def test_publishes_from_another_process_while_herald_runs(herald: Herald, ledger: Ledger) -> None:
    herald.write_dag("faulty", HEADER + DAG)
    herald.start()
    herald.wait_for(lambda: ledger.count(t.watcher, t.watcher.c.state == "running") >= 1, 60, "the watcher to run")
    n = 300
    sent = finish(publisher(herald, 0, n))
    herald.wait_for(lambda: ledger.drained(n), 240, f"{n} messages drained")
    ledger.check(n)
    if herald.env["HERALD_DATABASE_URL"].startswith("sqlite"):
        assert sent["through_herald"] == n  # every one committed by Herald's group commits
    else:
        assert sent["through_herald"] == 0  # PostgreSQL: written by the publisher itself


@pytest.mark.timeout(900)
def test_publishes_while_herald_is_killed_are_each_one_run(herald: Herald, ledger: Ledger) -> None:
    herald.write_dag("faulty", HEADER + DAG)
    n = 1500
    # On SQLite the first Herald dies right after its 40th group commit, before answering it.
    herald.start(extra_env={"HERALD_FAULT": "publish_after_commit:40"})
    proc = publisher(herald, 0, n)
    assert herald.proc is not None
    if herald.env["HERALD_DATABASE_URL"].startswith("sqlite"):
        herald.proc.wait(120)
        assert herald.proc.returncode == 137  # the crash between a commit and its replies
        herald.proc = None
    else:
        time.sleep(1.0)
        herald.kill()  # PostgreSQL has no publish socket (nor its fault point): kill -9 mid-stream
    for pause in (0.5, 1.0):
        herald.start()
        time.sleep(pause)
        herald.kill()  # kill -9 while the publisher sends
    herald.start()
    finish(proc)
    herald.wait_for(lambda: ledger.drained(n), 400, f"{n} messages drained")
    ledger.check(n)
