"""Build try requests as the scheduler sends them, and run them through the worker."""

from __future__ import annotations

from typing import Any

from herald.executors.worker import run_task
from herald.sdk.dag import DAG


def request(
    dag: DAG,
    task_id: str,
    *,
    run_type: str = "manual",
    conf: dict[str, Any] | None = None,
    upstream: dict[str, Any] | None = None,
    xcom: dict[str, dict[str, Any]] | None = None,
    map_index: int | None = None,
    try_number: int = 1,
    start_date: str = "2024-05-01T10:30:00+00:00",
    events: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A try request with the keys the scheduler sends (the new ones only when given)."""
    req: dict[str, Any] = {
        "ti_id": 1,
        "dag_id": dag.dag_id,
        "task_id": task_id,
        "try_number": try_number,
        "run": {
            "run_id": f"{run_type}__1",
            "dag_id": dag.dag_id,
            "run_type": run_type,
            "conf": conf or {},
            "start_date": start_date,
        },
        "events": events or [],
        "upstream": upstream or {},
        "timeout": None,
        "queue": None,
    }
    if xcom is not None:
        req["xcom"] = xcom
    if map_index is not None:
        req["map_index"] = map_index
    return req


def run(dag: DAG, task_id: str, **kwargs: Any) -> dict[str, Any]:
    """Run one try of `task_id` in this process and return the worker's result."""
    return run_task({dag.dag_id: dag}, request(dag, task_id, **kwargs))
