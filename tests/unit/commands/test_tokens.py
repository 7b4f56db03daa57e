"""commands/tokens.py: create (shown once, stored hashed), list, revoke."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from herald.commands import tokens
from herald.commands.errors import Conflict, Invalid, NotFound
from herald.store import tables as t
from herald.store.tokens import create_token, expiry, hash_token, lookup
from tests.unit.commands.conftest import Db


def test_create_list_and_revoke(db: Db) -> None:
    token, name = tokens.create(db.engine, "read")
    assert name == "read-token" and token.startswith("hrld_")
    stored = [r.token_hash for r in db.all(select(t.api_token.c.token_hash))]
    assert stored == [hash_token(token)]
    with db.engine.connect() as conn:
        found = lookup(conn, token)
    assert found is not None and (found.name, found.scope) == ("read-token", "read")
    assert [(r["name"], r["scope"]) for r in tokens.list_all(db.engine)] == [("read-token", "read")]
    assert tokens.revoke(db.engine, "read-token") == "read-token"
    assert tokens.list_all(db.engine) == []


def test_wrong_arguments_are_invalid_and_an_unknown_name_is_not_found(db: Db) -> None:
    with pytest.raises(Invalid, match="unknown scope 'admin'"):
        tokens.create(db.engine, "admin")
    with pytest.raises(Invalid):
        tokens.create(db.engine, "read", "x" * 201)
    with pytest.raises(NotFound, match="no token named 'ghost'"):
        tokens.revoke(db.engine, "ghost")
    assert tokens.list_all(db.engine) == []


def test_names_are_unique_and_a_token_is_revoked_by_id(db: Db) -> None:
    tokens.create(db.engine, "read", "ci")
    with pytest.raises(Conflict, match="a token named 'ci' exists"):
        tokens.create(db.engine, "write", "ci")
    assert [tokens.create(db.engine, "write")[1] for _ in range(3)] == ["write-token", "write-token-2", "write-token-3"]
    listed = {r["name"]: r["id"] for r in tokens.list_all(db.engine)}
    assert tokens.revoke(db.engine, token_id=listed["write-token-2"]) == "write-token-2"
    with pytest.raises(NotFound, match="no token with id"):
        tokens.revoke(db.engine, token_id=listed["write-token-2"])
    with pytest.raises(Invalid):
        tokens.revoke(db.engine)
    assert sorted(r["name"] for r in tokens.list_all(db.engine)) == ["ci", "write-token", "write-token-3"]


def test_a_token_with_an_expiry_stops_working_after_it(db: Db) -> None:
    now = datetime.now(UTC)
    with db.engine.begin() as conn:
        past = create_token(conn, "read", "past", now - timedelta(seconds=1))
        future = create_token(conn, "read", "future", now + timedelta(hours=1))
    with db.engine.connect() as conn:
        assert lookup(conn, past) is None
        found = lookup(conn, future)
    assert found is not None and found.name == "future"
    assert expiry(future) == datetime.fromtimestamp(int((now + timedelta(hours=1)).timestamp()), UTC)
    # the expiry is part of what the hash covers: a token with its date changed is unknown
    forged = future.replace(f"exp{int((now + timedelta(hours=1)).timestamp())}", "exp99999999999")
    with db.engine.connect() as conn:
        assert lookup(conn, forged) is None
    token, _ = tokens.create(db.engine, "read", "week", "2w")
    until = expiry(token)
    assert until is not None and timedelta(days=13, hours=23) < until - now < timedelta(days=14, hours=1)


@pytest.mark.parametrize("text", ["", "30", "3 days", "0d", "-1d", "1y", "3651d"])
def test_a_wrong_expiry_is_invalid(text: str) -> None:
    with pytest.raises(Invalid):
        tokens.parse_expires_in(text)
