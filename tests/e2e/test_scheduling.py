"""Airflow's DAG-level scheduling arguments, end to end: catchup, end_date, run dates, max_active_tasks,
dagrun_timeout."""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Herald

# A yearly schedule: the ticks a test expects do not move while it runs.
CRON_DAGS = """
from datetime import datetime, timezone

from herald import DAG, task


def dates(logical_date, data_interval_start, data_interval_end, ds, ts):
    return {"logical": logical_date.isoformat(), "start": data_interval_start.isoformat(),
            "end": data_interval_end.isoformat(), "ds": ds, "ts": ts}


with DAG("yearly_catchup", schedule="0 0 1 1 *", start_date=datetime(2021, 6, 1, tzinfo=timezone.utc),
         end_date=datetime(2024, 6, 1, tzinfo=timezone.utc), catchup=True):
    task(dates)()

with DAG("yearly_latest", schedule="0 0 1 1 *", start_date=datetime(2021, 6, 1, tzinfo=timezone.utc)):
    task(dates)()

with DAG("yearly_ended", schedule="0 0 1 1 *", start_date=datetime(2021, 6, 1, tzinfo=timezone.utc),
         end_date=datetime(2024, 6, 1, tzinfo=timezone.utc), orientation="TB"):
    task(dates)()
"""


# Airflow's tutorial spelling: schedule=timedelta(...) and "@once"
PERIOD_DAGS = """
from datetime import datetime, timedelta, timezone

from herald import DAG, task


def when(logical_date, data_interval_start):
    return {"logical": logical_date.isoformat(), "start": data_interval_start.isoformat()}


with DAG("every_two_seconds", schedule=timedelta(seconds=2), start_date=datetime(2024, 1, 1, tzinfo=timezone.utc)):
    task(when)()

with DAG("just_once", schedule="@once", start_date=datetime(2024, 1, 1, tzinfo=timezone.utc)):
    task(when)()
"""


def _results(herald: Herald, dag_id: str) -> list[dict[str, Any]]:
    out = []
    for run in herald.runs(dag_id):
        detail = herald.cli_json("runs", "show", run["run_id"])
        out.append({"run": detail, "dates": detail["tasks"][0]["result"]})
    return sorted(out, key=lambda r: r["run"]["logical_date"])


def test_catchup_end_date_and_run_dates(herald: Herald) -> None:
    herald.write_dag("yearly", CRON_DAGS)
    herald.start()
    # catchup=True: a run per tick from start_date, none after end_date
    herald.wait_runs(3, "yearly_catchup")
    caught = _results(herald, "yearly_catchup")
    assert [r["run"]["logical_date"] for r in caught] == [f"{y}-01-01T00:00:00+00:00" for y in (2022, 2023, 2024)]
    assert all(r["run"]["run_type"] == "scheduled" and r["run"]["state"] == "success" for r in caught)
    # each run's tick is its logical date and data interval, in the context as in templates
    assert caught[0]["dates"] == {
        "logical": "2022-01-01T00:00:00+00:00",
        "start": "2022-01-01T00:00:00+00:00",
        "end": "2022-01-01T00:00:00+00:00",
        "ds": "2022-01-01",
        "ts": "2022-01-01T00:00:00+00:00",
    }
    # catchup=False (the default): only the latest tick already due
    latest = herald.wait_runs(1, "yearly_latest")
    this_year = datetime.now(UTC).year
    assert [r["logical_date"] for r in latest] == [f"{this_year}-01-01T00:00:00+00:00"]
    # past its end_date a DAG makes no run, and has no next tick
    dags = {d["dag_id"]: d for d in herald.cli_json("dags", "list")}
    assert dags["yearly_ended"]["next_cron_at"] is None and herald.runs("yearly_ended") == []
    assert dags["yearly_catchup"]["next_cron_at"] is None
    assert dags["yearly_latest"]["next_cron_at"] == f"{this_year + 1}-01-01T00:00:00+00:00"
    # an Airflow argument without effect in Herald is listed beside the import errors
    errors = herald.cli_json("dags", "errors")
    assert [(e["kind"], e["dag_id"]) for e in errors] == [("warning", "yearly_ended")]
    assert "orientation" in errors[0]["warning"] and dags["yearly_ended"]["warnings"] == [errors[0]["warning"]]
    code, text = herald.cli("dags", "errors")
    assert code == 0 and "warnings of DAG yearly_ended" in text and "orientation='TB'" in text
    # a manual run's logical date is when it was triggered; an event-made run has none (see test_runs)
    run_id = herald.cli_json("dags", "trigger", "yearly_latest")["run_id"]
    herald.wait_for(lambda: herald.cli_json("runs", "show", run_id)["state"] == "success", what="manual run")
    manual = herald.cli_json("runs", "show", run_id)
    assert manual["logical_date"] is not None and manual["tasks"][0]["result"]["logical"] == manual["logical_date"]


LIMIT_DAGS = """
import os
import time
from datetime import timedelta

from herald import DAG, task

MARKS = {marks!r}


@task
def hold(x):
    start = time.time()
    time.sleep(0.4)
    return [start, time.time()]


with DAG("one_at_a_time", schedule=None, max_active_tasks=1):
    hold.expand(x=[1, 2, 3])


@task
def stuck():
    with open(os.path.join(MARKS, "pid"), "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(600)


@task
def after():
    return "never"


with DAG("timing_out", schedule=None, dagrun_timeout=timedelta(seconds=2)):
    stuck() >> after()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_max_active_tasks_and_dagrun_timeout(herald: Herald, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    herald.write_dag("limits", LIMIT_DAGS.format(marks=str(marks)))
    herald.start()
    herald.wait_for(lambda: len(herald.cli_json("dags", "list")) == 2, what="the DAGs")
    # two runs, three map indexes each, two workers: max_active_tasks=1 runs one try at a time
    first = herald.cli_json("dags", "trigger", "one_at_a_time")["run_id"]
    second = herald.cli_json("dags", "trigger", "one_at_a_time")["run_id"]
    runs = herald.wait_runs(2, "one_at_a_time")
    assert {r["state"] for r in runs} == {"success"}
    spans = sorted(t["result"] for run_id in (first, second) for t in herald.cli_json("runs", "show", run_id)["tasks"])
    assert len(spans) == 6
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), spans

    # dagrun_timeout: the run fails, its running try is stopped, the others are skipped (as Airflow)
    run_id = herald.cli_json("dags", "trigger", "timing_out")["run_id"]
    herald.wait_for(lambda: (marks / "pid").exists(), what="the stuck task to start")
    pid = int((marks / "pid").read_text())
    herald.wait_runs(1, "timing_out", timeout=60)
    run = herald.cli_json("runs", "show", run_id)
    assert run["state"] == "failed"
    assert {t["task_id"]: t["state"] for t in run["tasks"]} == {"stuck": "skipped", "after": "skipped"}
    assert "dagrun_timeout" in run["tasks"][0]["error"]
    herald.wait_for(lambda: not _alive(pid), timeout=30, what="the timed-out try's process to be stopped")
    # the pool replaced the stopped worker: runs still run
    again = herald.cli_json("dags", "trigger", "one_at_a_time")["run_id"]
    herald.wait_for(lambda: herald.cli_json("runs", "show", again)["state"] == "success", what="a run after")


def test_a_timedelta_schedule_and_once(herald: Herald) -> None:
    herald.write_dag("periods", PERIOD_DAGS)
    herald.start()
    # a run every period, the first at once (catchup=False), each logical date one period after the last
    runs = herald.wait_runs(3, "every_two_seconds", timeout=60)
    dates = sorted(datetime.fromisoformat(r["logical_date"]) for r in runs)
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(dates[:3])}
    assert gaps == {2.0}, dates
    done = [herald.cli_json("runs", "show", r["run_id"]) for r in runs]
    finished = [d for d in done if d["state"] == "success"]
    assert finished and all(d["tasks"][0]["result"]["start"] == d["logical_date"] for d in finished)
    # @once: one run, for start_date, and no next tick
    (once,) = herald.wait_runs(1, "just_once")
    assert once["logical_date"] == "2024-01-01T00:00:00+00:00"
    dags = {d["dag_id"]: d for d in herald.cli_json("dags", "list")}
    assert dags["just_once"]["next_cron_at"] is None
    assert len(herald.runs("just_once")) == 1
