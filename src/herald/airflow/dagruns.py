"""The metadata-database calls of TriggerDagRunOperator, kept in one place.

The worker runs inside the Herald deployment, so it may open the metadata database
(its URL comes from `herald.config`). The writes and reads are the store's;
nothing else in `herald.airflow` touches the database.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine


@functools.lru_cache(maxsize=4)
def _engine(url: str) -> Engine:
    from herald.store.db import make_engine

    return make_engine(url, pool_size=1)


def engine() -> Engine:
    """The metadata database of this deployment (created once per process)."""
    from herald.config import Settings

    return _engine(Settings().db_url)


def dag_exists(dag_id: str) -> bool:
    """True when `dag_id` is a known, active DAG."""
    from herald.store import dags

    with engine().connect() as conn:
        return dags.is_active(conn, dag_id)


def trigger(dag_id: str, conf: dict[str, Any]) -> str:
    """Queue a manual run of `dag_id` with `conf`; returns its run id."""
    from herald import notify
    from herald.config import Settings
    from herald.store.runs import trigger_run

    with engine().begin() as conn:
        run_id = trigger_run(conn, dag_id, conf)
    notify.notify(Settings().db_url, notify.SCHEDULER)  # start it now, not at the next poll
    return run_id


def run_state(run_id: str) -> str | None:
    """The state of a run, or None when there is no such run."""
    from herald.store import runs

    with engine().connect() as conn:
        return runs.state_of(conn, run_id)
