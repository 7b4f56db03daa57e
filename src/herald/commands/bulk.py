"""Actions over a filter, as the UI's bulk buttons and the API ask: retry the failed
runs of a DAG or a time range, replay the dead letters of a watcher or a reason.

Each item goes through the same command as one would (`runs.retry`, the dead-letter
replay request); a filter is capped at `BULK_LIMIT` items per call.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from herald import notify
from herald.commands import runs as run_commands
from herald.commands.dags import require_dag
from herald.commands.errors import Conflict
from herald.store import dead_letters, queries
from herald.store.states import RunState

#: at most this many runs are retried by one call (call again for more)
BULK_LIMIT = 500


def retry_failed_runs(
    engine: Engine, dag_id: str | None = None, since: datetime | None = None, limit: int = BULK_LIMIT
) -> list[run_commands.Retried]:
    """Retry each failed run (newest first) of `dag_id` and/or queued since `since`.

    A run that stopped being failed meanwhile (retried by someone else) is left out.

    Raises:
        NotFound: `dag_id` names no DAG.
    """
    with engine.connect() as conn:
        if dag_id is not None:
            require_dag(conn, dag_id)
        failed = [r["run_id"] for r in queries.list_runs(conn, limit, dag_id, RunState.FAILED, since=since)]
    done = []
    for run_id in failed:
        try:
            done.append(run_commands.retry(engine, run_id))
        except Conflict:
            continue
    return done


def replay_dead_letters(engine: Engine, watcher_id: int | None = None, error: str | None = None) -> int:
    """Ask for the replay of every dead letter of `watcher_id` and/or whose reason contains
    `error`, not replayed or requested yet; returns how many were asked for."""
    with engine.begin() as conn:
        count = dead_letters.request_replay_matching(conn, watcher_id=watcher_id, error=error)
        if count:
            notify.notify_in(conn, notify.REPLAY)
        return count
