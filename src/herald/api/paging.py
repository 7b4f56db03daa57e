"""limit/offset pagination shared by every list endpoint."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Query

T = TypeVar("T")

MAX_LIMIT = 1000
MAX_OFFSET = 2**31


@dataclass(frozen=True)
class Paging:
    limit: int
    offset: int

    def page(self, fetch: Callable[[int, int], Sequence[T]]) -> dict[str, Any]:
        """Call `fetch(limit + 1, offset)` and cut it into a page with `next_offset`."""
        rows = list(fetch(self.limit + 1, self.offset))
        more = len(rows) > self.limit
        return {
            "items": rows[: self.limit],
            "limit": self.limit,
            "offset": self.offset,
            "next_offset": self.offset + self.limit if more else None,
        }


def paging(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="At most this many items.")] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Skip this many items (see next_offset).")] = 0,
) -> Paging:
    return Paging(limit, offset)


PageParams = Annotated[Paging, Depends(paging)]


def utc(value: datetime | None) -> datetime | None:
    """A query-string time as UTC; a time without an offset is taken as UTC.

    Raises:
        ApiError: 400 for a time that has no UTC form (`0001-01-01T00:00+01:00`).
    """
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        from herald.api.errors import ApiError

        raise ApiError(
            400, f"the time {value.isoformat()} is out of range in UTC", "give a time from year 1 to 9999 in UTC"
        ) from None


#: a database id in a path: the range of a 64-bit integer column
RowId = Annotated[int, Path(ge=1, le=2**63 - 1, description="A row id.")]
