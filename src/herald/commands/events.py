"""Asset events made by hand: emitted from the API (the webhook) or the CLI, and replayed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine

from herald.commands.dags import require_dag
from herald.commands.errors import Conflict, Invalid, NotFound
from herald.commands.runs import _replay_run
from herald.store import queries
from herald.store.events import insert_events
from herald.store.runs import consumers_from_db
from herald.store.storable import DEFAULT_MAX_DEPTH, json_problem
from herald.store.types import utcnow

#: `asset_event.source` of events posted to the webhook; the Idempotency-Key is their dedupe key
API_SOURCE = "api"
#: `asset_event.source` of events emitted with `herald events emit`
CLI_SOURCE = "cli"


def require_asset(conn: Connection, name: str) -> int:
    """The id of the asset `name`; raises `NotFound`, naming the known assets, when there is none."""
    found = queries.asset_id(conn, name)
    if found is None:
        known = ", ".join(queries.asset_names(conn)) or "none"
        raise NotFound(f"no asset {name!r}", f"assets come from DAG files; known assets: {known}")
    return found


def emit(
    engine: Engine,
    asset: str,
    extra: Any = None,
    *,
    source: str = CLI_SOURCE,
    idempotency_key: str | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> tuple[int, bool]:
    """Record an event of `asset`; the DAGs scheduled on it run. Returns (event id, created).

    With an `idempotency_key`, the same key again returns the first event and
    creates nothing: the key is the event's dedupe key under the unique
    (source, dedupe_key) constraint, so two concurrent calls make one event.

    Raises:
        Invalid: `extra` is not a JSON object, or one that cannot be stored (NaN,
            lone surrogates, nested deeper than `max_depth`).
        NotFound: there is no asset `asset`.
        Conflict: the key was used before for an event of another asset, or with another
            `extra` (as payment APIs answer a reused key with a different body).
    """
    extra = {} if extra is None else extra
    if not isinstance(extra, dict):
        raise Invalid(f"extra must be a JSON object, got {type(extra).__name__}", """for example {"key": 1}""")
    # Checked before the transaction: what the database or a reader would refuse
    # is answered as the caller's mistake, never a 500 after the commit.
    problem = json_problem(extra, max_depth, "extra")
    if problem is not None:
        raise Invalid(problem, "send strict JSON: finite numbers, valid Unicode, nested at most that deep")
    with engine.begin() as conn:
        asset_id = require_asset(conn, asset)
        now = utcnow()
        row = {"asset_id": asset_id, "source": source, "dedupe_key": idempotency_key, "extra": extra, "timestamp": now}
        new = insert_events(conn, [row], consumers_from_db(conn, asset_id), now)
        if new:
            return new[0][0], True
        assert idempotency_key is not None  # without a key there is nothing to collide with
        first = queries.event_by_dedupe_key(conn, source, idempotency_key)
        assert first is not None
        event_id, first_asset, first_extra = first
        if first_asset != asset_id:
            raise Conflict(
                f"Idempotency-Key {idempotency_key!r} was already used for an event of another asset"
                f" (event {event_id})",
                "use a new key for each distinct event",
            )
        if first_extra != extra:
            # a retry sends the same body; a different one under the same key is another
            # event that would be silently lost
            raise Conflict(
                f"Idempotency-Key {idempotency_key!r} was already used with another body (event {event_id})",
                "send the same body to retry, or use a new key for a new event",
            )
        return event_id, False


def replay(engine: Engine, event_id: int, dag_ids: list[str] | None = None) -> list[str]:
    """New runs that consume a stored event again, one per DAG; returns their run ids.

    Args:
        engine: the metadata database.
        event_id: the event to consume again.
        dag_ids: the DAGs to run (default: every DAG scheduled on the event's asset).

    Raises:
        NotFound: no such event, or one of `dag_ids` is not an active DAG.
        Conflict: no DAG is scheduled on the event's asset and none was named.
    """
    with engine.begin() as conn:
        asset_id = queries.event_asset_id(conn, event_id)
        if asset_id is None:
            raise NotFound(f"no event {event_id}", "list events with: herald events list (GET /api/v1/events)")
        if dag_ids is None:
            dag_ids = consumers_from_db(conn, asset_id)[asset_id]
            if not dag_ids:
                raise Conflict(
                    f"no DAG is scheduled on the asset of event {event_id}",
                    'name the DAGs to run: --dag DAG_ID, or in the API body {"dag_ids": ["..."]}',
                )
        runs: list[str] = []
        for dag_id in dict.fromkeys(dag_ids):
            require_dag(conn, dag_id)
            runs.append(_replay_run(conn, dag_id, event_id))
        return runs
