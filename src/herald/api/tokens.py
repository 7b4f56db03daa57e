"""API tokens: random secrets shown once, stored only as their SHA-256 hash.

A token is 32 random bytes, so a plain SHA-256 is enough to make the stored
hash useless to whoever reads the database (no password-style stretching is
needed for a secret nobody chose). Scopes are ordered: `write` can read too.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from herald.store import tables as t
from herald.store.types import utcnow

SCOPES = ("read", "write")
PREFIX = "hrld_"
ADMIN_NAME = "admin"


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


def create_token(conn: Connection, scope: str, name: str) -> str:
    """Store a new token of `scope` under `name` and return it: the only time it is readable."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}: use one of {', '.join(SCOPES)}")
    token = PREFIX + secrets.token_urlsafe(32)
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
    return TokenInfo(int(row.id), row.name, row.scope)


def list_tokens(conn: Connection) -> list[dict[str, Any]]:
    """Tokens by name and scope (their hashes stay in the database)."""
    rows = conn.execute(select(t.api_token).order_by(t.api_token.c.id)).all()
    return [{"id": int(r.id), "name": r.name, "scope": r.scope, "created_at": r.created_at.isoformat()} for r in rows]


def revoke(conn: Connection, name: str) -> int:
    """Delete every token named `name`; returns how many there were."""
    return int(conn.execute(delete(t.api_token).where(t.api_token.c.name == name)).rowcount)
