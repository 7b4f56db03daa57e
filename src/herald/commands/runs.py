"""Retrying a failed run or one failed task of it.

The writes are the store's (`herald.store.runs`, `herald.store.tries`); this
module decides what a retry means.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

from herald.commands.errors import Conflict, Invalid, NotFound
from herald.store import dags, queries, runs
from herald.store import tries as tries_store
from herald.store.states import RunState, TryState


@dataclass(frozen=True)
class Retried:
    """What a retry did: the run's new state and the tasks that will run again."""

    run_id: str
    state: RunState
    retried: list[str]


#: how many runs an ambiguous run id names in its error
_CANDIDATES_SHOWN = 10


def short_id(run_id: str) -> str:
    """The short form of a run id that listings show: its random tag (`1a2b3c4d`), as git shows a hash.

    Every run id begins with its type and its time (`manual__2026-11-21T12:00:00.123456+00:00_1a2b3c4d`),
    so no short prefix of it tells runs apart; the tag that ends it does. A run id
    of another form is shown whole.
    """
    _, sep, tag = run_id.rpartition("_")
    return tag if sep and len(tag) == 8 and all(c in "0123456789abcdef" for c in tag) else run_id


def resolve(engine: Engine, text: str) -> str:
    """The run id `text` names: the run id itself, a unique prefix of it, or a unique prefix of its tag.

    Raises:
        NotFound: no run id starts with `text`, nor any tag.
        Invalid: `text` is empty, or names several runs (the error lists them).
    """
    if not text.strip():
        raise Invalid("a run id is empty", "list runs with: herald runs list")
    with engine.connect() as conn:
        if queries.run_exists(conn, text):
            return text
        found = queries.runs_matching(conn, text, _CANDIDATES_SHOWN + 1)
    if not found:
        raise NotFound(f"no run {text!r}", "list runs with: herald runs list (GET /api/v1/runs)")
    if len(found) > 1:
        more = ", and more" if len(found) > _CANDIDATES_SHOWN else ""
        listed = "\n  ".join(found[:_CANDIDATES_SHOWN])
        raise Invalid(
            f"{text!r} names {'more than ' if more else ''}{min(len(found), _CANDIDATES_SHOWN)} runs:\n  {listed}",
            "give more of the run id (or its short id, as herald runs list shows it)",
        )
    return found[0]


def retry(engine: Engine, run_id: str, task_id: str | None = None) -> Retried:
    """Run a failed run's failed tasks again (or only `task_id`) and the tasks they held back.

    Each retried task gets one more try; tasks marked `upstream_failed` because
    of it go back to waiting. A run that failed before any task started (its
    DAG was missing) is queued again.

    Raises:
        NotFound: no run `run_id`, or it has no task `task_id`.
        Conflict: the run did not fail, or `task_id` did not fail.
    """
    with engine.begin() as conn:
        found = queries.run_tries(conn, run_id)
        if found is None:
            raise NotFound(f"no run {run_id!r}", "list runs with: herald runs list (GET /api/v1/runs)")
        run_pk, dag_id, run_state, tries = found
        states = _task_states(tries)
        if task_id is not None and task_id not in states:
            raise NotFound(f"run {run_id} has no task {task_id!r}", f"its tasks: {', '.join(sorted(states)) or 'none'}")
        if run_state != RunState.FAILED:
            raise Conflict(f"run {run_id} is {run_state}; only a failed run can be retried")
        if not tries:
            _requeue_run(conn, run_pk)
            return Retried(run_id, RunState.QUEUED, [])
        failed = sorted(k for k, v in states.items() if v == TryState.FAILED)
        chosen = failed if task_id is None else [task_id]
        if not chosen or states[chosen[0]] != TryState.FAILED:
            message = (
                f"task {task_id!r} of run {run_id} is {states[task_id]}; only failed tasks retry"
                if task_id
                else f"run {run_id} has no failed task to retry"
            )
            raise Conflict(message, f"failed tasks: {', '.join(failed) or 'none'}")
        held_back = _held_back(dags.dag_tasks(conn, dag_id), states, set(chosen))
        _retry_run(
            conn, run_pk, [r for r in tries if r["task_id"] in chosen and r["state"] == TryState.FAILED], held_back
        )
        return Retried(run_id, RunState.RUNNING, chosen)


#: a mapped task stands as its worst map index
_WORST_FIRST = (TryState.FAILED, TryState.UPSTREAM_FAILED)


def _task_states(tries: list[dict[str, Any]]) -> dict[str, str]:
    """Each task's state: its try's, or for a mapped task `failed` if a map index failed."""
    by_task: dict[str, list[str]] = defaultdict(list)
    for r in tries:
        by_task[r["task_id"]].append(r["state"])
    states = {}
    for task_id, found in by_task.items():
        states[task_id] = next((s.value for s in _WORST_FIRST if s in found), found[-1])
    return states


def _held_back(tasks: list[dict[str, Any]], states: dict[str, str], retried: set[str]) -> list[str]:
    """`upstream_failed` tasks that only failed tasks in `retried` held back."""
    downstream: dict[str, set[str]] = defaultdict(set)
    for task in tasks:
        for up in task.get("upstream", []):
            downstream[up].add(task["task_id"])

    def below(roots: Iterable[str]) -> set[str]:
        seen: set[str] = set()
        frontier = set(roots)
        while frontier:
            nxt = {d for f in frontier for d in downstream.get(f, ()) if d not in seen}
            seen |= nxt
            frontier = nxt
        return seen

    still_failed = {k for k, v in states.items() if v == TryState.FAILED} - retried
    blocked = below(still_failed)
    return sorted(k for k in below(retried) if states.get(k) == TryState.UPSTREAM_FAILED and k not in blocked)


def _requeue_run(conn: Connection, run_pk: int) -> None:
    """Queue a failed run that never started a task again."""
    runs.requeue(conn, run_pk)


def _retry_run(conn: Connection, run_pk: int, tries: list[dict[str, Any]], held_back: list[str]) -> None:
    """Retry `tries` (one more try each), let the `held_back` tasks wait again, and run the run again."""
    tries_store.clear(conn, run_pk, {r["task_id"]: 1 for r in tries}, held_back)
    runs.rerun(conn, run_pk)


def _replay_run(conn: Connection, dag_id: str, event_id: int) -> str:
    """Queue a replay run of `dag_id` that consumes `event_id`; returns its run id."""
    return runs.replay_run(conn, dag_id, event_id)
