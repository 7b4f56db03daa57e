"""Every endpoint but health needs a token; writes need the write scope; tokens are stored hashed."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from herald.store import tables as t
from herald.store.tokens import ensure_admin_token, hash_token
from tests.api.conftest import Api

READS = [
    "/api/v1/dags",
    "/api/v1/dags/manual",
    "/api/v1/import-errors",
    "/api/v1/runs",
    "/api/v1/assets",
    "/api/v1/assets/orders",
    "/api/v1/assets/orders/event-counts",
    "/api/v1/events",
    "/api/v1/watchers",
    "/api/v1/dead-letters",
    "/api/v1/variables",
    "/api/v1/auth/whoami",
    "/metrics",
]
WRITES = [
    ("/api/v1/dags/manual/runs", {"conf": {}}),
    ("/api/v1/dags/manual/pause", None),
    ("/api/v1/dags/manual/unpause", None),
    ("/api/v1/assets/orders/events", {"extra": {}}),
    ("/api/v1/events/1/replay", None),
    ("/api/v1/runs/x/retry", None),
    ("/api/v1/runs/x/tasks/y/retry", None),
    ("/api/v1/dead-letters/1/replay", None),
    ("/api/v1/watchers/1/dead-letters/replay", None),
    ("/api/v1/variables", {"key": "k", "value": "v"}),
]


def test_health_needs_no_token(api: Api) -> None:
    r = api.get("/api/v1/health", token=None)
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["database"] == "ok"


@pytest.mark.parametrize("path", READS)
def test_reads_without_a_token_or_with_a_wrong_one_get_401(api: Api, path: str) -> None:
    for token in (None, "hrld_not-a-real-token"):
        r = api.get(path, token=token)
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"] == "Bearer"
        body = r.json()
        assert body["error"] == "unauthorized" and "token" in body["message"] and body["hint"]


@pytest.mark.parametrize("path", READS)
def test_a_read_token_reads(api: Api, path: str) -> None:
    assert api.get(path).status_code == 200


@pytest.mark.parametrize(("path", "body"), WRITES)
def test_writes_need_the_write_scope(api: Api, path: str, body: object) -> None:
    assert api.post(path, token=None, json=body).status_code == 401
    assert api.post(path, token="hrld_wrong", json=body).status_code == 401
    r = api.post(path, token="read", json=body)
    assert r.status_code == 403
    assert "write scope" in r.json()["message"] and "herald tokens create --scope write" in r.json()["hint"]


def test_a_token_that_is_not_bearer_is_refused(api: Api) -> None:
    r = api.client.get("/api/v1/dags", headers={"Authorization": f"Basic {api.read}"})
    assert r.status_code == 401


def test_whoami_names_the_token_and_its_scope_never_the_secret(api: Api) -> None:
    assert api.ok("/api/v1/auth/whoami") == {"name": "reader", "scope": "read"}
    r = api.get("/api/v1/auth/whoami", token="write")
    assert r.json() == {"name": "writer", "scope": "write"}
    assert api.write not in r.text


def test_tokens_are_stored_hashed(api: Api) -> None:
    with api.engine.connect() as conn:
        stored = set(conn.execute(select(t.api_token.c.token_hash)).scalars())
    assert hash_token(api.read) in stored and api.read not in stored and api.write not in stored


def test_the_admin_token_is_made_once(api: Api) -> None:
    with api.engine.begin() as conn:
        first = ensure_admin_token(conn)
        again = ensure_admin_token(conn)
    assert first is not None and first.startswith("hrld_") and again is None
    assert api.get("/api/v1/auth/whoami", token=first).json() == {"name": "admin", "scope": "write"}
    r = api.post("/api/v1/dags/manual/runs", token=first, json={"conf": {}})
    assert r.status_code == 201


def test_unknown_paths_answer_json(api: Api) -> None:
    r = api.get("/api/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"] == "not_found" and "/api/v1/nothing-here" in r.json()["message"]
