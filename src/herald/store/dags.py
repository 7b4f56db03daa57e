"""DAG rows as the faces change them: pause and unpause, and the lookups that name what exists.

The DAG processor (`store/sync.py`) writes the DAGs themselves; this module owns
the one thing users change on them, `is_paused`. Functions take the caller's
connection and never commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select, update

from herald.store import tables as t


def is_active(conn: Connection, dag_id: str) -> bool:
    """True when `dag_id` is a DAG of the DAGs folder as last loaded."""
    found = conn.execute(select(t.dag.c.dag_id).where(t.dag.c.dag_id == dag_id, t.dag.c.is_active)).first()
    return found is not None


def active_dag_ids(conn: Connection, limit: int = 20) -> list[str]:
    """The ids of active DAGs, sorted (for an error that names what exists)."""
    query = select(t.dag.c.dag_id).where(t.dag.c.is_active).order_by(t.dag.c.dag_id).limit(limit)
    return [str(d) for d in conn.execute(query).scalars()]


def set_paused(conn: Connection, dag_id: str, paused: bool) -> bool:
    """Pause or unpause an active DAG; False when there is no such DAG."""
    query = update(t.dag).where(t.dag.c.dag_id == dag_id, t.dag.c.is_active).values(is_paused=paused)
    return bool(conn.execute(query).rowcount)


def dag_tasks(conn: Connection, dag_id: str) -> list[dict[str, Any]]:
    """The DAG's tasks as stored by the DAG processor (`task_id`, `upstream`, ...); [] when unknown."""
    tasks = conn.execute(select(t.dag.c.tasks).where(t.dag.c.dag_id == dag_id)).scalar()
    return list(tasks or [])
