"""The local pool ends what a try started: after the try, at its timeout; not when turned off."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from herald.executors.local import LocalExecutor
from herald.executors.reaper import running
from herald.executors.records import TaskRequest, TaskResult

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="subreapers and /proc as Linux has them")

DAG = """
import os, subprocess, time

from herald import dag, task


def leave(name):
    child = subprocess.Popen(["sleep", "600"], start_new_session=True)  # out of the worker's group too
    with open(os.path.join({marks!r}, name + ".tmp"), "w") as fh:
        fh.write(str(child.pid))
    os.rename(os.path.join({marks!r}, name + ".tmp"), os.path.join({marks!r}, name))


@dag(schedule=None)
def leaves():
    @task
    def t():
        leave("returns")
        return "done"

    t()


@dag(schedule=None)
def hangs():
    @task
    def t():
        leave("hangs")
        time.sleep(600)

    t()


leaves()
hangs()
"""


def request(ti_id: int, dag_id: str, timeout: float | None = None) -> TaskRequest:
    run = {"run_id": f"r{ti_id}", "dag_id": dag_id, "run_type": "manual", "conf": {}, "start_date": None}
    return TaskRequest(ti_id=ti_id, dag_id=dag_id, task_id="t", try_number=1, run=run, timeout=timeout)


def run_tries(folder: Path, requests: list[TaskRequest], process_groups: bool = True) -> dict[int, TaskResult]:
    async def scenario() -> dict[int, TaskResult]:
        results: dict[int, TaskResult] = {}
        pool = LocalExecutor(str(folder), 2, process_groups=process_groups)
        pool.start(lambda started: None, lambda result: results.__setitem__(result.ti_id, result))
        try:
            pool.submit(requests)
            async with asyncio.timeout(60):
                while len(results) < len(requests):
                    await asyncio.sleep(0.02)
        finally:
            await pool.stop(grace=1)
        return results

    return asyncio.run(scenario())


@pytest.fixture
def dags(tmp_path: Path) -> tuple[Path, Path]:
    folder, marks = tmp_path / "dags", tmp_path / "marks"
    folder.mkdir()
    marks.mkdir()
    (folder / "leftovers.py").write_text(DAG.format(marks=str(marks)))
    return folder, marks


def test_what_a_try_started_ends_after_it_and_at_its_timeout(dags: tuple[Path, Path]) -> None:
    folder, marks = dags
    results = run_tries(folder, [request(1, "leaves"), request(2, "hangs", timeout=2)])
    assert results[1].state == "success"
    assert "[herald] ended 1 process(es) the task left running: sleep" in (results[1].log or "")
    assert results[2].state == "failed" and "timed out" in (results[2].error or "")
    left = {name: int((marks / name).read_text()) for name in ("returns", "hangs")}
    # ended before the result was sent (after the try) or before the timeout was reported
    assert not any(running(pid) for pid in left.values()), left


def test_turned_off_a_try_may_leave_processes(dags: tuple[Path, Path]) -> None:
    folder, marks = dags
    results = run_tries(folder, [request(1, "leaves")], process_groups=False)
    assert results[1].state == "success" and "[herald] ended" not in (results[1].log or "")
    pid = int((marks / "returns").read_text())
    try:
        assert running(pid)
    finally:
        os.kill(pid, signal.SIGKILL)
