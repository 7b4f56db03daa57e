"""How a run ends: its state, and the DAG callback it asks for, in one transaction.

Every end of a run goes through `end_runs`. A DAG with `on_success_callback` or
`on_failure_callback` gets a callback request (`store.callbacks`) inserted in
the transaction that ends the run, and only for the runs this transaction moved:
a run two schedulers both try to end asks once. The callback itself never runs
here (`executors/dag_callbacks.py` runs it in a child process).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import Connection

from herald.sdk.dag import DAG
from herald.store import callbacks as store_callbacks
from herald.store import runs as store_runs
from herald.store.states import RunState

#: Airflow's reasons (DagCallbackRequest.msg)
SUCCESS = "success"
TASK_FAILURE = "task_failure"
TIMED_OUT = "timed_out"


def callback_kind(state: RunState) -> str:
    """The DAG argument called when a run ends in `state`."""
    return "on_success_callback" if state is RunState.SUCCESS else "on_failure_callback"


def end_runs(
    conn: Connection,
    dags: Mapping[str, DAG],
    state: RunState,
    run_pks: list[int],
    now: datetime,
    reason: str,
    *,
    queued: bool = False,
) -> int:
    """End these runs in `state`; returns how many callback requests were made."""
    moved = store_runs.finish(conn, state, run_pks, now, queued=queued)
    kind = callback_kind(state)
    wanted = [
        (pk, dag_id, kind, reason)
        for pk, dag_id in moved
        if (dag := dags.get(dag_id)) is not None and dag.callbacks.get(kind)
    ]
    store_callbacks.request(conn, wanted, now)
    return len(wanted)
