"""Airflow DAGs, ported by `herald port`, run end to end on `herald standalone` as Airflow runs them.

The corpus in `dags/` is written as Airflow users write it (airflow imports). Each test
copies part of it, runs `herald port` into the Herald DAGs folder, triggers the DAGs and
checks what the tasks saw and their final states.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from herald.cli.port import port
from tests.e2e.conftest import Herald

pytestmark = pytest.mark.e2e

CORPUS = Path(__file__).parent / "dags"
ENV = {
    "AIRFLOW_VAR_THRESHOLD": '{"max": 5}',
    "AIRFLOW_VAR_REGION": "eu",
    "AIRFLOW_CONN_WAREHOUSE": "postgres://etl:secret@warehouse.local:5439/sales",
}


def _port(herald: Herald, tmp_path: Path, files: list[str]) -> None:
    """Copy the corpus files, run `herald port` on them into the DAGs folder; every file must port."""
    src = tmp_path / "airflow_dags"
    src.mkdir()
    for name in files:
        shutil.copy(CORPUS / name, src / name)
    app = typer.Typer()
    app.command()(port)
    result = CliRunner().invoke(app, [str(src), str(herald.dags)])
    assert result.exit_code == 0, result.output
    assert all(line.endswith(": ok") for line in result.output.splitlines() if line.startswith(str(src)))
    assert "airflow" not in "".join(
        line
        for p in herald.dags.glob("*.py")
        for line in p.read_text().splitlines()
        if line.startswith(("from", "import"))
    )


def _run(herald: Herald, dag_id: str, conf: dict[str, Any] | None = None) -> dict[str, Any]:
    """Trigger a run and wait for it to finish; returns `runs show` of it."""
    herald.wait_for(lambda: any(d["dag_id"] == dag_id for d in herald.cli_json("dags", "list")), what=f"DAG {dag_id}")
    args = ["dags", "trigger", dag_id] + (["--conf", json.dumps(conf)] if conf else [])
    run_id = herald.cli_json(*args)["run_id"]
    herald.wait_for(
        lambda: next(
            (r for r in herald.runs(dag_id) if r["run_id"] == run_id and r["state"] in ("success", "failed")), None
        ),
        timeout=90,
        what=f"run {run_id} to finish",
    )
    detail: dict[str, Any] = herald.cli_json("runs", "show", run_id)
    return detail


def _tasks(detail: dict[str, Any]) -> dict[str, Any]:
    """task id -> its latest try (state, result)."""
    return {t["task_id"]: t for t in detail["tasks"]}


def _states(detail: dict[str, Any]) -> dict[str, list[str]]:
    """task id -> states of its tries or map indexes."""
    states: dict[str, list[str]] = defaultdict(list)
    for t in detail["tasks"]:
        states[t["task_id"]].append(t["state"])
    return dict(states)


def test_classic_taskflow_groups_sensors_hooks_and_custom_operators(herald: Herald, tmp_path: Path) -> None:
    _port(
        herald,
        tmp_path,
        [
            "classic_operators.py",
            "taskflow.py",
            "taskflow_more.py",
            "groups.py",
            "sensors.py",
            "hooks_and_variables.py",
            "custom_operator.py",
            "redis.py",
            "compat_helpers.py",
        ],
    )
    herald.start(extra_env=ENV)
    _, errors = herald.cli("dags", "errors")
    assert "redis.py" not in errors and "circular" not in errors.lower(), errors

    classic = _run(herald, "compat_classic", {"who": "herald"})
    tasks = _tasks(classic)
    assert classic["state"] == "success", classic["tasks"]
    assert tasks["extract"]["result"] == {"source": "herald", "run_id": classic["run_id"], "conf": {"who": "herald"}}
    assert tasks["shout"]["result"] == "hello herald"
    assert tasks["summarize"]["result"]["message"] == "hello herald"

    flow = _run(herald, "compat_taskflow", {"count": 4})
    assert flow["state"] == "success", flow["tasks"]
    assert _tasks(flow)["combine"]["result"] == {"total": 6, "label": "x", "task": "combine", "logical": "True"}
    invalid = _run(herald, "compat_taskflow", {"count": 0})
    assert invalid["state"] == "failed" and _tasks(invalid)["make"]["state"] == "failed"

    more = _run(herald, "compat_taskflow_more", {"greeting": "hi"})
    assert more["state"] == "success", more["tasks"]
    mt = _tasks(more)
    assert mt["say"]["result"] == "hi herald from compat_taskflow_more"
    assert mt["echo"]["result"] == {"word": "hi", "params": {"greeting": "hi"}}
    assert "poke 3 of 3" in herald.cli_json("tasks", "logs", more["run_id"], "countdown")["log"]

    groups = _run(herald, "compat_groups")
    assert groups["state"] == "success", groups["tasks"]
    gt = _tasks(groups)
    assert set(gt) == {"begin", "extract.one", "extract.two", "load.save", "a", "b", "end"}
    assert gt["load.save"]["result"] == "load.save"

    sensors = _run(herald, "compat_sensors")
    assert sensors["state"] == "success", sensors["tasks"]
    st = _tasks(sensors)
    assert st["wait_for_value"]["result"] == {"seen": st["make_marker"]["result"]}

    hooks = _run(herald, "compat_hooks")
    assert hooks["state"] == "success", hooks["tasks"]
    ht = _tasks(hooks)
    assert ht["read"]["result"] == {
        "threshold": {"max": 5},
        "host": "warehouse.local",
        "port": 5439,
        "login": "etl",
    }
    assert ht["templated"]["result"] == "eu-sales"

    named = _run(herald, "compat_redis_named")
    assert _tasks(named)["compute"]["result"] == {"doubled": 42, "redis_is_the_library": True}

    controller = _run(herald, "compat_controller")
    assert controller["state"] == "success", controller["tasks"]
    triggered = [r for r in herald.runs("compat_custom")]
    assert len(triggered) == 1 and triggered[0]["state"] == "success"
    greeted = herald.cli_json("runs", "show", triggered[0]["run_id"])
    assert _tasks(greeted)["greet"]["result"] == f"Hello {controller['run_id']} from compat_custom"


# The tests below need the scheduler side of issue 11 (trigger rules, the skipped state,
# map indexes): they are real tests of Airflow's behaviour, run once both sides are merged.


def test_pushed_xcoms_reach_later_tasks(herald: Herald, tmp_path: Path) -> None:
    _port(herald, tmp_path, ["classic_operators.py"])
    herald.start()
    classic = _run(herald, "compat_classic")
    assert _tasks(classic)["summarize"]["result"] == {"rows": "3", "message": "hello world"}
    shout_log = herald.cli_json("tasks", "logs", classic["run_id"], "shout")["log"]
    assert "rows=3" in shout_log


def test_branches_skip_the_paths_not_taken(herald: Herald, tmp_path: Path) -> None:
    _port(herald, tmp_path, ["branching.py"])
    herald.start()
    run = _run(herald, "compat_branching")
    states = {k: v[-1] for k, v in _states(run).items()}
    assert states == {
        "choose": "success",
        "big": "skipped",
        "after_big": "skipped",
        "small": "success",
        "join": "success",
        "strict_join": "skipped",
        "pick": "success",
        "left": "success",
        "right": "skipped",
    }
    assert run["state"] == "success"
    big = _run(herald, "compat_branching", {"size": 50})
    assert {k: v[-1] for k, v in _states(big).items()}["small"] == "skipped"


def test_short_circuits_skip_downstream(herald: Herald, tmp_path: Path) -> None:
    _port(herald, tmp_path, ["short_circuit.py"])
    herald.start()
    run = _run(herald, "compat_short_circuit")
    states = {k: v[-1] for k, v in _states(run).items()}
    assert states == {
        "gate": "success",
        "skipped_1": "skipped",
        "skipped_2": "skipped",
        "soft_gate": "success",
        "direct": "skipped",
        "always_after": "success",
        "open_gate": "success",
        "runs": "success",
    }
    assert run["state"] == "success"


def test_trigger_rules_after_failure_and_skip(herald: Herald, tmp_path: Path) -> None:
    _port(herald, tmp_path, ["trigger_rules.py"])
    herald.start()
    run = _run(herald, "compat_trigger_rules")
    states = _states(run)
    assert states["bad"] == ["failed"]  # AirflowFailException: no retry despite retries=3
    assert {k: v[-1] for k, v in states.items() if k != "bad"} == {
        "ok": "success",
        "skipped": "skipped",
        "all_success": "upstream_failed",
        "one_failed": "success",
        "all_done": "success",
        "one_success": "success",
        "none_failed": "upstream_failed",
        "all_failed": "skipped",
        "none_skipped": "skipped",
        "none_failed_after_skip": "success",
        "all_skipped": "success",
        "after_skip": "skipped",
        "always": "success",
    }
    assert run["state"] == "failed"


def test_mapped_tasks_run_once_per_map_index(herald: Herald, tmp_path: Path) -> None:
    _port(herald, tmp_path, ["mapping.py"])
    herald.start()
    run = _run(herald, "compat_mapping")
    assert run["state"] == "success", run["tasks"]
    tasks = _tasks(run)
    assert tasks["total"]["result"] == 36
    assert sorted(t["result"] for t in run["tasks"] if t["task_id"] == "add") == [11, 12, 13]
    assert sorted(t["result"] for t in run["tasks"] if t["task_id"] == "pair") == ["1-x", "2-y"]
    assert sorted(t["result"] for t in run["tasks"] if t["task_id"] == "echo") == ["one", "two"]


def test_the_classic_operator_example_runs(herald: Herald) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "dags"
    shutil.copy(examples / "classic_daily_report.py", herald.dags / "classic_daily_report.py")
    herald.start()
    run = _run(herald, "classic_daily_report", {"region": "north"})
    assert run["state"] == "success", run["tasks"]
    tasks = _tasks(run)
    assert tasks["summarise"]["result"] == {"region": "north", "rows": 3, "total": 242.75}
    assert tasks["announce"]["result"].startswith("report for north on ") and tasks["announce"]["result"].endswith(
        ": 242.75"
    )
    rejected = _run(herald, "classic_daily_report", {"region": "mars"})
    assert rejected["state"] == "failed"


def test_assets_aliases_metadata_references_and_inlets(herald: Herald, tmp_path: Path) -> None:
    _port(herald, tmp_path, ["assets.py"])
    herald.start()
    # Given two runs of a producer emitting through an alias, with Metadata and with an outlet extra
    first = _run(herald, "compat_asset_producer")
    second = _run(herald, "compat_asset_producer")
    assert first["state"] == second["state"] == "success"
    assert _tasks(first)["with_metadata"]["result"] == "written"
    # Then the DAG scheduled on the alias ran once per event added through it
    alias_runs = herald.wait_runs(2, "compat_alias_consumer", timeout=90)
    seen = sorted(
        (herald.cli_json("runs", "show", r["run_id"])["tasks"][0]["result"] for r in alias_runs),
        key=lambda x: str(x["by_alias"][0]["extra"]["run"]),
    )
    expected = sorted([first["run_id"], second["run_id"]])
    for result, run_id in zip(seen, expected, strict=True):
        assert result["by_asset"] == 1
        assert result["by_alias"] == [
            {
                "asset": ["s3://bucket/compat/aliased", "s3://bucket/compat/aliased", "asset"],
                "extra": {"run": run_id},
                "source": ["compat_asset_producer", "through_alias", run_id, -1],
                "aliases": ["compat-alias"],
            }
        ]
    # and the DAGs scheduled on references ran with the events' Airflow attributes
    ref_runs = herald.wait_runs(2, "compat_ref_consumer", timeout=90)
    described = [herald.cli_json("runs", "show", r["run_id"])["tasks"][0]["result"] for r in ref_runs]
    assert sorted(d[0]["extra"]["run"] for d in described) == expected
    for d in described:
        (event,) = d
        assert event["asset"] == ["compat_orders", "s3://bucket/compat/orders", "sales"]
        assert event["extra"]["rows"] == 3 and event["aliases"] == []
        assert event["source"] == ["compat_asset_producer", "with_metadata", event["extra"]["run"], -1]
    uri_runs = herald.wait_runs(2, "compat_uri_ref_consumer", timeout=90)
    for r in uri_runs:
        (event,) = herald.cli_json("runs", "show", r["run_id"])["tasks"][0]["result"]
        assert event["extra"] == {"checked": True}
    # When a task reads its inlets, it gets the recent events, newest last
    inlets = _tasks(_run(herald, "compat_inlets"))["read"]["result"]
    assert inlets == {
        "count": 2,
        "newest_run": second["run_id"],
        "last_two": [first["run_id"], second["run_id"]],
        "oldest_first": True,
        "alias_assets": ["s3://bucket/compat/aliased"] * 2,
    }


def test_mapping_over_xcom_zero_length_and_max_map_length(herald: Herald, tmp_path: Path) -> None:
    _port(herald, tmp_path, ["mapping_xcom.py"])
    herald.start(extra_env={"HERALD_MAX_MAP_LENGTH": "5"})
    run = _run(herald, "compat_mapping_xcom")
    tries = run["tasks"]
    loads = [t for t in tries if t["task_id"] == "load"]
    # expand_kwargs over an upstream result: one try per dict, each knowing its map index
    assert [(t["map_index"], t["state"]) for t in loads] == [(0, "success"), (1, "success"), (2, "success")]
    assert [t["result"] for t in loads] == [
        {"name": "a.csv", "rows": 2, "map_index": 0},
        {"name": "b.csv", "rows": 5, "map_index": 1},
        {"name": "c.csv", "rows": 1, "map_index": 2},
    ]
    tasks = _tasks(run)
    # downstream tasks get the mapped task's results as a list in map index order
    assert tasks["sizes"]["result"] == [2, 5, 1]
    assert tasks["pulled"]["result"] == [t["result"] for t in loads]
    # nothing to map over: the mapped task is skipped (one try, map index -1), and so is what needs it
    assert [(t["map_index"], t["state"]) for t in tries if t["task_id"] == "never"] == [(-1, "skipped")]
    assert tasks["after_never"]["state"] == "skipped"
    # more values than max_map_length: the task returning them fails with the reason, its mapped task cannot run
    assert tasks["many"]["state"] == "failed"
    assert "unmappable return value length: 6 > 5" in tasks["many"]["error"]
    assert tasks["each"]["state"] == "upstream_failed"
    assert run["state"] == "failed"
    log = herald.cli_json("tasks", "logs", run["run_id"], "load", "--map-index", "2")
    assert log["map_index"] == 2 and log["state"] == "success"
