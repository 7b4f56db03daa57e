"""API tokens: create (shown once), list, revoke."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from herald.commands.errors import Conflict, Invalid, NotFound
from herald.store import tokens

MAX_NAME_LENGTH = 200
#: `--expires-in`: a number and a unit
_DURATION = re.compile(r"^\s*(\d{1,9})\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: the longest expiry `--expires-in` takes (ten years)
MAX_EXPIRY = timedelta(days=3650)


def parse_expires_in(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `2w`, `3600s` as a duration.

    Raises:
        Invalid: anything else, zero, or more than ten years.
    """
    found = _DURATION.match(text)
    if found is None or int(found.group(1)) == 0:
        raise Invalid(
            f"--expires-in {text!r} is not a duration",
            "give a number and a unit: 30d (days), 12h (hours), 90m (minutes), 2w (weeks), 3600s (seconds)",
        )
    seconds = int(found.group(1)) * _UNITS[found.group(2)]
    if seconds > MAX_EXPIRY.total_seconds():
        raise Invalid(f"--expires-in {text!r} is more than ten years", "give a shorter duration, or none")
    return timedelta(seconds=seconds)


def create(engine: Engine, scope: str, name: str | None = None, expires_in: str | None = None) -> tuple[str, str]:
    """Create a token of `scope`; returns (token, its name). The token is readable only now.

    With `expires_in` (`30d`, `12h`...) the token stops working after that long
    (`herald.store.tokens.expiry(token)` says when).

    Names are unique: without `name`, the first free of `SCOPE-token`, `SCOPE-token-2`...

    Raises:
        Invalid: an unknown scope, a name that is empty or too long, a wrong `expires_in`.
        Conflict: a token of that name exists.
    """
    if scope not in tokens.SCOPES:
        raise Invalid(f"unknown scope {scope!r}", f"use --scope {' or --scope '.join(tokens.SCOPES)}")
    if name is not None and (not name.strip() or len(name) > MAX_NAME_LENGTH):
        raise Invalid(f"the name must be 1 to {MAX_NAME_LENGTH} characters")
    expires_at = None if expires_in is None else datetime.now(UTC) + parse_expires_in(expires_in)
    with engine.begin() as conn:
        label = name
        if label is None:
            label, n = f"{scope}-token", 1
            while tokens.name_taken(conn, label):
                n += 1
                label = f"{scope}-token-{n}"
        try:
            return tokens.create_token(conn, scope, label, expires_at), label
        except tokens.NameTaken:
            raise Conflict(
                f"a token named {label!r} exists",
                f"pick another --name, or revoke that one first: herald tokens revoke {label!r}",
            ) from None


def list_all(engine: Engine) -> list[dict[str, Any]]:
    """Tokens by name and scope (never the tokens or their hashes)."""
    with engine.connect() as conn:
        return tokens.list_tokens(conn)


def revoke(engine: Engine, name: str | None = None, token_id: int | None = None) -> str:
    """Delete one token, by name or by id; returns its name. Callers using it get 401 at once.

    Raises:
        Invalid: neither or both of `name` and `token_id`.
        NotFound: no such token.
        Conflict: several tokens have this name (made before names were unique): revoke by id.
    """
    if (name is None) == (token_id is None):
        raise Invalid("name a token, or give --id (not both)", "herald tokens revoke NAME, or --id ID")
    with engine.begin() as conn:
        if token_id is not None:
            revoked = tokens.revoke_id(conn, token_id)
            if revoked is None:
                raise NotFound(f"no token with id {token_id}", "list tokens with: herald tokens list")
            return revoked
        assert name is not None
        count = tokens.count_named(conn, name)
        if count > 1:
            raise Conflict(
                f"{count} tokens are named {name!r}",
                "revoke one by its id (herald tokens list shows them): herald tokens revoke --id ID",
            )
        if not tokens.revoke(conn, name):
            raise NotFound(f"no token named {name!r}", "list tokens with: herald tokens list")
        return name
