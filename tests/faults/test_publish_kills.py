"""Publishes from another process while Herald runs, and while it is killed: every message exactly one run.

The publisher is a process of its own calling `herald.publishing.local_publish`
once per message, as a producer would. On SQLite, while Herald runs, its
messages are committed to the publish inbox that Herald moves into the queue
(`herald.triggerer.inbox`); while Herald is down it writes the database itself.
On PostgreSQL it always writes the database. Herald is killed with SIGKILL
while they flow, on SQLite first right after a move's commit and before the
moved rows leave the inbox (`HERALD_FAULT=inbox_after_move`): the next Herald
must not move them again; and messages committed to the inbox after a kill's
last move wait there for the next start.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from herald.store import tables as t
from tests.e2e.conftest import Herald
from tests.faults.test_kills import DAG, HEADER, Ledger

PUBLISHER = """
import json, os, sys, time
from herald.publishing import local_publish
from herald.triggerer import inbox

through = 0
send = inbox.publish


def counting(*args, **kwargs):
    global through
    sent = send(*args, **kwargs)
    through += sent
    return sent


def progress(done):
    with open(folder + "/progress.tmp", "w") as fh:
        fh.write(str(done))
    os.replace(folder + "/progress.tmp", folder + "/progress")


inbox.publish = counting
folder, phases, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for phase in range(phases):
    while not os.path.exists(f"{folder}/go-{phase}"):  # the test's go-ahead (Herald restarted)
        time.sleep(0.01)
    for j in range(per):
        i = phase * per + j
        local_publish("jobs", [json.dumps({"n": i}).encode()])
        if j % 10 == 9:
            progress(i + 1)
print(json.dumps({"through_herald": through}))
"""


class Publisher:
    """A producer process publishing `per` messages in each phase, a phase when the test says go."""

    def __init__(self, herald: Herald, phases: int, per: int) -> None:
        self.folder = herald.home / "publisher"
        self.folder.mkdir()
        self.per = per
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, str(self.folder), str(phases), str(per)],
            env=herald.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def go(self, phase: int) -> None:
        (self.folder / f"go-{phase}").touch()

    def published(self) -> int:
        try:
            return int((self.folder / "progress").read_text() or 0)
        except FileNotFoundError:
            return 0

    def finish(self) -> dict[str, int]:
        out, err = self.proc.communicate(timeout=300)
        assert self.proc.returncode == 0, err
        result: dict[str, int] = json.loads(out.strip().splitlines()[-1])
        return result


@pytest.fixture
def ledger(herald: Herald) -> Any:
    led = Ledger(herald.env["HERALD_DATABASE_URL"])
    yield led
    led.close()


@pytest.mark.timeout(600)
def test_publishes_from_another_process_while_herald_runs(herald: Herald, ledger: Ledger) -> None:
    herald.write_dag("faulty", HEADER + DAG)
    herald.start()
    herald.wait_for(lambda: ledger.count(t.watcher, t.watcher.c.state == "running") >= 1, 60, "the watcher to run")
    n = 300
    producer = Publisher(herald, 1, n)
    producer.go(0)
    sent = producer.finish()
    herald.wait_for(lambda: ledger.drained(n), 240, f"{n} messages drained")
    ledger.check(n)
    if herald.env["HERALD_DATABASE_URL"].startswith("sqlite"):
        assert sent["through_herald"] == n  # every one committed to the inbox Herald moves
    else:
        assert sent["through_herald"] == 0  # PostgreSQL: written by the publisher itself


@pytest.mark.timeout(900)
def test_publishes_while_herald_is_killed_are_each_one_run(herald: Herald, ledger: Ledger) -> None:
    herald.write_dag("faulty", HEADER + DAG)
    per = 500
    producer = Publisher(herald, 4, per)
    sqlite = herald.env["HERALD_DATABASE_URL"].startswith("sqlite")
    # On SQLite the first Herald dies right after its first move's commit, before the rows
    # leave the inbox: the next one must not move them again. The rest of the phase is
    # written by the publisher itself (it sees the connection end).
    herald.start(extra_env={"HERALD_FAULT": "inbox_after_move:1"})
    producer.go(0)
    assert herald.proc is not None
    if sqlite:
        herald.proc.wait(120)
        assert herald.proc.returncode == 137  # the crash between a move's commit and the drop of its rows
        herald.proc = None
    else:
        # PostgreSQL has no inbox (nor its fault point): kill -9 mid-stream.
        herald.wait_for(lambda: producer.published() >= 100, 120, "100 publishes")
        herald.kill()
    for phase in (1, 2):
        herald.start()
        producer.go(phase)
        # kill -9 while the publisher sends: what it committed to the inbox since the last
        # move waits there for the next start; what comes after is written directly
        herald.wait_for(lambda p=phase: producer.published() >= p * per + 100, 120, "100 publishes of the phase")
        herald.kill()
    herald.start()
    producer.go(3)
    sent = producer.finish()
    n = 4 * per
    herald.wait_for(lambda: ledger.drained(n), 400, f"{n} messages drained")
    ledger.check(n)
    if sqlite:
        assert 0 < sent["through_herald"] < n  # some through the inbox, some written directly
