"""API tokens: random secrets shown once, stored only as their SHA-256 hash (the `api_token` table).

A token is 32 random bytes, so a plain SHA-256 is enough to make the stored
hash useless to whoever reads the database (no password-style stretching is
needed for a secret nobody chose). Scopes are ordered: `write` can read too.

Names are unique (`create_token` refuses a taken name), so revoking by name
removes one token; `revoke_id` removes one by its id whatever its name.

Expiry: a token created with an expiry carries it in its own text
(`hrld_exp<UNIX SECONDS>_<random>`). The stored hash covers the whole text, so
the expiry cannot be changed without making the token unknown; `lookup` refuses
the token once that time has passed. (The `api_token` table has no column for
it: a later migration can add `expires_at` to list it.)
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select

from herald.store import tables as t
from herald.store.types import utcnow

SCOPES = ("read", "write")
PREFIX = "hrld_"
ADMIN_NAME = "admin"
#: the expiry a token carries in its text
_EXPIRY = re.compile(r"^hrld_exp(\d{1,12})_")


class NameTaken(ValueError):
    """A token of that name exists (names are unique: revoking by name removes one token)."""


@dataclass(frozen=True)
class TokenInfo:
    """Who is calling: a token's name and scope, never the token itself."""

    id: int
    name: str
    scope: str

    def allows(self, scope: str) -> bool:
        """True when this token's scope covers `scope` (write covers read)."""
        return SCOPES.index(self.scope) >= SCOPES.index(scope)


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def name_taken(conn: Connection, name: str) -> bool:
    """True when a token is named `name`."""
    return conn.execute(select(t.api_token.c.id).where(t.api_token.c.name == name).limit(1)).first() is not None


def create_token(conn: Connection, scope: str, name: str, expires_at: datetime | None = None) -> str:
    """Store a new token of `scope` under `name` and return it: the only time it is readable.

    Raises:
        ValueError: an unknown scope.
        NameTaken: a token of that name exists.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}: use one of {', '.join(SCOPES)}")
    if name_taken(conn, name):
        raise NameTaken(f"a token named {name!r} exists")
    token = PREFIX + secrets.token_urlsafe(32)
    if expires_at is not None:
        token = f"{PREFIX}exp{int(expires_at.timestamp())}_{secrets.token_urlsafe(32)}"
    conn.execute(insert(t.api_token).values(name=name, token_hash=hash_token(token), scope=scope, created_at=utcnow()))
    return token


def ensure_admin_token(conn: Connection) -> str | None:
    """Create the `admin` write token on first start; None when one exists already."""
    exists = conn.execute(select(t.api_token.c.id).where(t.api_token.c.name == ADMIN_NAME).limit(1)).first()
    if exists is not None:
        return None
    return create_token(conn, "write", ADMIN_NAME)


def lookup(conn: Connection, token: str) -> TokenInfo | None:
    """The token's name and scope, or None when it is unknown."""
    row = conn.execute(
        select(t.api_token.c.id, t.api_token.c.name, t.api_token.c.scope).where(
            t.api_token.c.token_hash == hash_token(token)
        )
    ).first()
    if row is None or row.scope not in SCOPES:
        return None
    expires_at = expiry(token)
    if expires_at is not None and expires_at <= datetime.now(UTC):
        return None
    return TokenInfo(int(row.id), row.name, row.scope)


def expiry(token: str) -> datetime | None:
    """When `token` stops working, if it was created with an expiry."""
    found = _EXPIRY.match(token)
    if found is None:
        return None
    try:
        return datetime.fromtimestamp(int(found.group(1)), UTC)
    except (OverflowError, OSError, ValueError):
        return datetime.max.replace(tzinfo=UTC)


def list_tokens(conn: Connection) -> list[dict[str, Any]]:
    """Tokens by name and scope (their hashes stay in the database)."""
    rows = conn.execute(select(t.api_token).order_by(t.api_token.c.id)).all()
    return [{"id": int(r.id), "name": r.name, "scope": r.scope, "created_at": r.created_at.isoformat()} for r in rows]


def count_named(conn: Connection, name: str) -> int:
    """How many tokens are named `name` (more than one only for tokens made before names were unique)."""
    return int(
        conn.execute(select(func.count()).select_from(t.api_token).where(t.api_token.c.name == name)).scalar_one()
    )


def revoke(conn: Connection, name: str) -> int:
    """Delete every token named `name`; returns how many there were."""
    return int(conn.execute(delete(t.api_token).where(t.api_token.c.name == name)).rowcount)


def revoke_id(conn: Connection, token_id: int) -> str | None:
    """Delete the token `token_id`; returns its name, or None when there is none."""
    name = conn.execute(select(t.api_token.c.name).where(t.api_token.c.id == token_id)).scalar()
    if name is None:
        return None
    conn.execute(delete(t.api_token).where(t.api_token.c.id == token_id))
    return str(name)
