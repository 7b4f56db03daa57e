"""The local pool after a reload: older workers run unchanged DAGs until a new worker is ready."""

from __future__ import annotations

import asyncio
from pathlib import Path

from herald.dagcheck import stamp
from herald.executors.local import LocalExecutor
from herald.executors.records import TaskRequest, TaskResult
from herald.loader import load_folder

DAG = """
import os
import time

from herald import dag, task

if os.path.exists({hold!r}):
    while not os.path.exists({release!r}):
        time.sleep(0.02)


@dag(schedule=None)
def {name}():
    @task
    def t():
        return "{name} ran"

    t()


{name}()
"""


def request(ti_id: int, dag_id: str) -> TaskRequest:
    run = {"run_id": f"r{ti_id}", "dag_id": dag_id, "run_type": "manual", "conf": {}, "start_date": None}
    return TaskRequest(ti_id=ti_id, dag_id=dag_id, task_id="t", try_number=1, run=run)


async def result_of(results: dict[int, TaskResult], ti_id: int) -> TaskResult:
    async with asyncio.timeout(60):
        while ti_id not in results:
            await asyncio.sleep(0.02)
    return results[ti_id]


def test_older_workers_stand_in_for_unchanged_dags_while_new_ones_import(tmp_path: Path) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    hold, release = tmp_path / "hold", tmp_path / "release"
    for name in ("steady", "slow"):
        (folder / f"{name}.py").write_text(DAG.format(name=name, hold=str(hold), release=str(release)))
    slow = str(folder / "slow.py")

    async def scenario() -> None:
        results: dict[int, TaskResult] = {}
        pool = LocalExecutor(str(folder), 1)
        pool.reload(load_folder(folder).files)
        pool.start(lambda started: None, lambda result: results.__setitem__(result.ti_id, result))
        try:
            pool.submit([request(1, "steady")])
            first = await result_of(results, 1)
            assert first.state == "success", first.error

            # slow.py changes and now takes until `release` to import: the new worker waits
            hold.touch()
            with open(slow, "a") as f:
                f.write("\n# changed\n")
            files = {p: s for p in map(str, folder.glob("*.py")) if (s := stamp(p)) is not None}
            pool.reload(files)
            pool.submit([request(2, "slow"), request(3, "steady")])

            # the unchanged DAG runs on the older worker meanwhile ...
            steady = await result_of(results, 3)
            assert steady.state == "success", steady.error
            assert steady.hostname == first.hostname
            # ... the changed one waits for a worker that imported its new version
            assert 2 not in results
            release.touch()
            changed = await result_of(results, 2)
            assert changed.state == "success", changed.error
            assert changed.hostname != first.hostname
        finally:
            await pool.stop(grace=0)

    asyncio.run(scenario())
