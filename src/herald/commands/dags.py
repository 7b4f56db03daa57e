"""Pausing, unpausing and triggering DAGs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine

from herald.commands.errors import Invalid, NotFound
from herald.store import dags
from herald.store import runs as runs_store
from herald.store.runs import trigger_run


def require_dag(conn: Connection, dag_id: str) -> None:
    """Raise `NotFound`, naming the known DAGs, unless `dag_id` is an active DAG."""
    if not dags.is_active(conn, dag_id):
        known = ", ".join(dags.active_dag_ids(conn)) or "none (is the DAGs folder loaded?)"
        raise NotFound(f"no DAG {dag_id!r}", f"known DAGs: {known}")


def require_known_dag(conn: Connection, dag_id: str) -> None:
    """Raise `NotFound`, naming the known DAGs, unless `dag_id` is an active DAG or one that has runs.

    For a filter (`herald runs list --dag`): the runs of a DAG file since removed are still listed.
    """
    if not dags.is_active(conn, dag_id) and not runs_store.has_runs(conn, dag_id):
        require_dag(conn, dag_id)


def set_paused(engine: Engine, dag_id: str, paused: bool) -> None:
    """Pause a DAG (no new runs; its events keep queueing) or unpause it.

    Raises:
        NotFound: there is no active DAG `dag_id`.
    """
    with engine.begin() as conn:
        if not dags.set_paused(conn, dag_id, paused):
            require_dag(conn, dag_id)


def trigger(engine: Engine, dag_id: str, conf: Any = None) -> str:
    """Queue a manual run of `dag_id` with `conf` (tasks see it as `params`); returns its run id.

    Raises:
        Invalid: `conf` is not a JSON object.
        NotFound: there is no active DAG `dag_id`.
    """
    conf = {} if conf is None else conf
    if not isinstance(conf, dict):
        raise Invalid(f"conf must be a JSON object, got {type(conf).__name__}", """for example {"key": "value"}""")
    with engine.begin() as conn:
        require_dag(conn, dag_id)
        return trigger_run(conn, dag_id, conf)
