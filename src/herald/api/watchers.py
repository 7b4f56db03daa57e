"""Watchers (health, lag, counters) and dead letters (with a replay request)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from herald.api import actions
from herald.api.deps import AUTH_RESPONSES, CONFLICT, NOT_FOUND, Conn, Db, Reader, Writer
from herald.api.errors import NotFound
from herald.api.paging import PageParams, RowId
from herald.api.schemas import DeadLetter, Page, Watcher
from herald.store import queries

router = APIRouter(responses=AUTH_RESPONSES)


@router.get("/watchers", response_model=Page[Watcher], tags=["watchers"], summary="Watchers, by asset and name")
def list_watchers(_: Reader, conn: Conn, page: PageParams) -> dict[str, Any]:
    """State, last message, received / events / skipped / deduped / dead-lettered, lag, last error."""
    return page.page(lambda limit, offset: queries.list_watchers(conn, limit, offset=offset))


@router.get("/dead-letters", response_model=Page[DeadLetter], tags=["dead letters"], summary="Dead letters")
def list_dead_letters(
    _: Reader,
    conn: Conn,
    page: PageParams,
    watcher_id: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="Only those of this watcher.")] = None,
) -> dict[str, Any]:
    """Messages that could not become events, newest first, with the reason."""
    return page.page(lambda limit, offset: queries.list_dead_letters(conn, limit, offset=offset, watcher_id=watcher_id))


@router.get(
    "/dead-letters/{dead_letter_id}",
    response_model=DeadLetter,
    responses=NOT_FOUND,
    tags=["dead letters"],
    summary="One dead letter",
)
def get_dead_letter(dead_letter_id: RowId, _: Reader, conn: Conn) -> dict[str, Any]:
    found = queries.get_dead_letter(conn, dead_letter_id)
    if found is None:
        raise NotFound(f"no dead letter {dead_letter_id}", "list dead letters with GET /api/v1/dead-letters")
    return found


@router.post(
    "/dead-letters/{dead_letter_id}/replay",
    response_model=DeadLetter,
    status_code=status.HTTP_202_ACCEPTED,
    responses={**NOT_FOUND, **CONFLICT},
    tags=["dead letters"],
    summary="Replay a dead letter",
)
def replay_dead_letter(dead_letter_id: RowId, _: Writer, db: Db) -> dict[str, Any]:
    """Ask the triggerer to run the message through its watcher's trigger again (`replay_requested_at`).

    The triggerer owns the trigger (its `apply_function` lives in the DAG file):
    when it has replayed the message, `replayed_at` is set.
    """
    with db.begin() as conn:
        actions.request_dead_letter_replay(conn, dead_letter_id)
    with db.connect() as conn:
        found = queries.get_dead_letter(conn, dead_letter_id)
    assert found is not None
    return found
