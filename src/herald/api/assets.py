"""Assets and their events: listings, the webhook (with Idempotency-Key), replaying an event."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, status

from herald.api.deps import AUTH_RESPONSES, CONFLICT, NOT_FOUND, Conn, Db, Reader, Wake, Writer
from herald.api.paging import PageParams, RowId, utc
from herald.api.schemas import (
    Asset,
    AssetDetail,
    Event,
    EventCount,
    EventCreate,
    Page,
    ReplayEventRequest,
    ReplayResult,
)
from herald.commands import events as event_commands
from herald.commands.errors import NotFound
from herald.store import queries
from herald.store.types import utcnow

router = APIRouter(tags=["assets"], responses=AUTH_RESPONSES)


@router.get("/assets", response_model=Page[Asset], summary="Assets, by name")
def list_assets(_: Reader, conn: Conn, page: PageParams) -> dict[str, Any]:
    """Assets and the DAGs scheduled on them."""
    return page.page(lambda limit, offset: queries.list_assets(conn, limit, offset=offset))


@router.get(
    "/assets/{name:path}/event-counts", response_model=list[EventCount], responses=NOT_FOUND, summary="Events over time"
)
def event_counts(
    name: str,
    _: Reader,
    conn: Conn,
    minutes: Annotated[int, Query(ge=1, le=60 * 24 * 31, description="How far back to look.")] = 60,
    buckets: Annotated[int, Query(ge=1, le=500, description="Into how many equal slices.")] = 30,
) -> list[dict[str, Any]]:
    """How many events arrived in each slice of the last `minutes` (a fixed-size list, not paginated)."""
    if queries.get_asset(conn, name) is None:
        raise NotFound(f"no asset {name!r}", "list assets with GET /api/v1/assets")
    now = utcnow()
    return queries.event_counts(conn, name, now - timedelta(minutes=minutes), now, buckets)


@router.post(
    "/assets/{name:path}/events",
    response_model=Event,
    status_code=status.HTTP_201_CREATED,
    responses={
        **NOT_FOUND,
        **CONFLICT,
        200: {"model": Event, "description": "The Idempotency-Key was seen before: the first event, unchanged."},
    },
    summary="Record an event (webhook)",
)
def post_event(
    name: str,
    body: EventCreate,
    request: Request,
    response: Response,
    _: Writer,
    db: Db,
    wake: Wake,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            description="The same key twice records one event; the second call returns the first event with 200.",
        ),
    ] = None,
) -> dict[str, Any]:
    """Record an event of the asset; the DAGs scheduled on it run. Answered after the commit."""
    event_id, created = event_commands.emit(
        db,
        name,
        body.extra,
        source=event_commands.API_SOURCE,
        idempotency_key=idempotency_key,
        max_depth=request.app.state.max_payload_depth,
    )
    if created:
        wake()
    else:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    with db.connect() as conn:
        event = queries.get_event(conn, event_id)
    assert event is not None
    return event


# Asset names may hold "/" (Airflow's names derived from URIs do): the routes take
# `{name:path}`, and this one comes after the routes with a suffix, or it would take
# "NAME/event-counts" for a name.
@router.get("/assets/{name:path}", response_model=AssetDetail, responses=NOT_FOUND, summary="One asset")
def get_asset(name: str, _: Reader, conn: Conn) -> dict[str, Any]:
    found = queries.get_asset(conn, name)
    if found is None:
        raise NotFound(f"no asset {name!r}", "list assets with GET /api/v1/assets")
    return found


@router.get("/events", response_model=Page[Event], summary="Asset events, newest first")
def list_events(
    _: Reader,
    conn: Conn,
    page: PageParams,
    asset: Annotated[str | None, Query(description="Only events of this asset.")] = None,
    source: Annotated[
        str | None, Query(description="api, cli, watcher:ID, task:DAG.TASK, or a kind ending in ':' (watcher:).")
    ] = None,
    since: Annotated[datetime | None, Query(description="At or after (ISO 8601; UTC if no offset).")] = None,
    until: Annotated[datetime | None, Query(description="Before.")] = None,
    q: Annotated[
        str | None,
        Query(max_length=200, description="Text the payload or message holds (case-insensitive; a scan: add since)."),
    ] = None,
) -> dict[str, Any]:
    """Events with the runs each caused; a large extra is a preview (GET /events/{id} has it whole)."""

    def fetch(limit: int, offset: int) -> list[dict[str, Any]]:
        rows = queries.list_events(
            conn, limit, asset, offset=offset, source=source, since=utc(since), until=utc(until), contains=q
        )
        return queries.events_by_id(conn, [r["id"] for r in rows], summary=True)[::-1]

    return page.page(fetch)


@router.get("/events/{event_id}", response_model=Event, responses=NOT_FOUND, summary="One event")
def get_event(event_id: RowId, _: Reader, conn: Conn) -> dict[str, Any]:
    """An event: payload, where the message came from, and the runs it caused."""
    found = queries.get_event(conn, event_id)
    if found is None:
        raise NotFound(f"no event {event_id}", "list events with GET /api/v1/events")
    return found


@router.post(
    "/events/{event_id}/replay",
    response_model=ReplayResult,
    status_code=status.HTTP_201_CREATED,
    responses={**NOT_FOUND, **CONFLICT},
    summary="Replay an event",
)
def replay_event(
    event_id: RowId, _: Writer, db: Db, wake: Wake, body: ReplayEventRequest | None = None
) -> dict[str, Any]:
    """New runs that consume this stored event again: one per DAG scheduled on its asset, or per `dag_ids`."""
    run_ids = event_commands.replay(db, event_id, body.dag_ids if body else None)
    wake()
    with db.connect() as conn:
        runs = [queries.get_run(conn, r) for r in run_ids]
    return {
        "event_id": event_id,
        "runs": [{"run_id": r["run_id"], "dag_id": r["dag_id"], "state": r["state"]} for r in runs if r],
    }
