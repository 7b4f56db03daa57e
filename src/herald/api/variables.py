"""Variables: list, read, create, change, delete. Secrets are masked unless a writer asks to reveal them.

A variable whose key names a secret (`password`, `token`, `api_key`...: see
`herald.sdk.masking.SENSITIVE_NAMES`) is answered with the value `***` and
`masked: true`. `?reveal=true` returns the stored value, and needs the write
scope: a read token can list variables without learning their secrets.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from herald.api.deps import AUTH_RESPONSES, CONFLICT, NOT_FOUND, Db, Reader, Writer
from herald.api.errors import ApiError
from herald.api.paging import PageParams
from herald.api.schemas import Page, Variable, VariableCreate, VariableUpdate
from herald.commands import variables as commands
from herald.store.tokens import TokenInfo
from herald.store.variables import VariableRow, masked

router = APIRouter(tags=["variables"], responses=AUTH_RESPONSES)

Reveal = Annotated[bool, Query(description="Return the stored values of secret variables too (needs the write scope).")]


def _check_reveal(info: TokenInfo, reveal: bool) -> None:
    if reveal and not info.allows("write"):
        raise ApiError(
            403,
            f"token {info.name!r} has the {info.scope} scope; reveal=true needs the write scope",
            "drop reveal=true to read the variables with secrets masked",
        )


def _out(row: VariableRow, reveal: bool) -> dict[str, Any]:
    shown = row if reveal else masked(row)
    return {
        "key": shown.key,
        "value": shown.value,
        "description": shown.description,
        "updated_at": shown.updated_at,
        "masked": shown is not row,
    }


@router.get("/variables", response_model=Page[Variable], summary="Variables, by key")
def list_variables(info: Reader, db: Db, page: PageParams, reveal: Reveal = False) -> dict[str, Any]:
    """Variables with their descriptions; secret values masked as `***` unless `reveal=true`."""
    _check_reveal(info, reveal)
    return page.page(lambda limit, offset: [_out(r, reveal) for r in commands.list_all(db, limit, offset)])


@router.get("/variables/{key}", response_model=Variable, responses=NOT_FOUND, summary="One variable")
def get_variable(key: str, info: Reader, db: Db, reveal: Reveal = False) -> dict[str, Any]:
    """One variable; a secret value is masked as `***` unless `reveal=true`."""
    _check_reveal(info, reveal)
    return _out(commands.get(db, key), reveal)


@router.post(
    "/variables",
    response_model=Variable,
    status_code=status.HTTP_201_CREATED,
    responses=CONFLICT,
    summary="Create a variable",
)
def create_variable(body: VariableCreate, _: Writer, db: Db) -> dict[str, Any]:
    """Create a variable (409 when the key exists: change it with PATCH). The answer masks a secret value."""
    return _out(commands.create(db, body.key, body.value, body.description), False)


@router.patch("/variables/{key}", response_model=Variable, responses=NOT_FOUND, summary="Change a variable")
def update_variable(key: str, body: VariableUpdate, _: Writer, db: Db) -> dict[str, Any]:
    """Change the value and/or the description. The answer masks a secret value."""
    return _out(commands.update(db, key, body.value, body.description), False)


@router.delete(
    "/variables/{key}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=NOT_FOUND,
    response_class=Response,
    summary="Delete a variable",
)
def delete_variable(key: str, _: Writer, db: Db) -> Response:
    """Delete a variable; tasks that read it from now on get their default."""
    commands.delete(db, key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
