"""/api/v1/variables: create, read, change, delete; secrets masked unless a writer asks to reveal them."""

from __future__ import annotations

from typing import Any

from herald.store.variables import MASK
from tests.api.conftest import Api


def _send(api: Api, method: str, path: str, token: str = "write", **kw: Any) -> Any:
    return api.client.request(method, path, headers=api.headers(api._token(token)), **kw)


def test_create_read_change_delete(api: Api) -> None:
    r = api.post("/api/v1/variables", json={"key": "bucket", "value": "s3://a", "description": "landing"})
    assert r.status_code == 201, r.text
    assert r.json()["value"] == "s3://a" and r.json()["masked"] is False
    got = api.ok("/api/v1/variables/bucket")
    assert (got["key"], got["value"], got["description"]) == ("bucket", "s3://a", "landing")
    r = _send(api, "PATCH", "/api/v1/variables/bucket", json={"value": "s3://b"})
    assert r.status_code == 200 and (r.json()["value"], r.json()["description"]) == ("s3://b", "landing")
    assert [v["key"] for v in api.ok("/api/v1/variables")["items"]] == ["bucket"]
    r = _send(api, "DELETE", "/api/v1/variables/bucket")
    assert r.status_code == 204 and r.content == b""
    r = api.get("/api/v1/variables/bucket")
    assert r.status_code == 404
    assert r.json() == {
        "status": 404,
        "error": "not_found",
        "message": "no variable 'bucket'",
        "hint": "list variables with: herald variables list (GET /api/v1/variables)",
    }


def test_secret_values_are_masked_in_lists_and_reads(api: Api) -> None:
    api.post("/api/v1/variables", json={"key": "db_password", "value": "hunter2"})
    api.post("/api/v1/variables", json={"key": "bucket", "value": "s3://a"})
    listed = {v["key"]: (v["value"], v["masked"]) for v in api.ok("/api/v1/variables")["items"]}
    assert listed == {"db_password": (MASK, True), "bucket": ("s3://a", False)}
    one = api.get("/api/v1/variables/db_password")
    assert one.json()["value"] == MASK and "hunter2" not in one.text
    written = _send(api, "PATCH", "/api/v1/variables/db_password", json={"value": "hunter3"})
    assert written.json()["value"] == MASK and "hunter3" not in written.text


def test_reveal_needs_the_write_scope(api: Api) -> None:
    api.post("/api/v1/variables", json={"key": "api_key", "value": "k-123"})
    r = api.get("/api/v1/variables/api_key", params={"reveal": "true"})
    assert r.status_code == 403 and "write scope" in r.json()["message"] and "k-123" not in r.text
    assert api.get("/api/v1/variables", params={"reveal": "true"}).status_code == 403
    r = api.get("/api/v1/variables/api_key", token="write", params={"reveal": "true"})
    assert r.status_code == 200 and (r.json()["value"], r.json()["masked"]) == ("k-123", False)
    listed = api.get("/api/v1/variables", token="write", params={"reveal": "true"}).json()["items"]
    assert listed[0]["value"] == "k-123"


def test_command_errors_become_409_and_422_with_the_error_body(api: Api) -> None:
    assert api.post("/api/v1/variables", json={"key": "once", "value": "1"}).status_code == 201
    r = api.post("/api/v1/variables", json={"key": "once", "value": "2"})
    assert r.status_code == 409
    assert r.json()["error"] == "conflict" and r.json()["message"] == "variable 'once' exists" and r.json()["hint"]
    r = api.post("/api/v1/variables", json={"key": "   ", "value": "x"})
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_request" and "1 to 250 characters" in r.json()["message"]
    assert api.ok("/api/v1/variables/once")["value"] == "1"


def test_missing_variables_and_read_tokens(api: Api) -> None:
    assert _send(api, "PATCH", "/api/v1/variables/ghost", json={"value": "x"}).status_code == 404
    assert _send(api, "DELETE", "/api/v1/variables/ghost").status_code == 404
    api.post("/api/v1/variables", json={"key": "k", "value": "v"})
    for method, body in (("PATCH", {"value": "x"}), ("DELETE", None)):
        r = _send(api, method, "/api/v1/variables/k", token="read", json=body)
        assert r.status_code == 403
    assert api.ok("/api/v1/variables/k")["value"] == "v"


def test_variables_are_in_the_openapi_document(api: Api) -> None:
    paths = api.ok("/api/v1/openapi.json", token=None)["paths"]
    assert set(paths["/api/v1/variables"]) == {"get", "post"}
    assert set(paths["/api/v1/variables/{key}"]) == {"get", "patch", "delete"}


def test_replay_every_dead_letter_of_a_watcher(api: Api) -> None:
    first, second = api.add_dead_letter(), api.add_dead_letter()
    watcher_id = api.ok(f"/api/v1/dead-letters/{first}")["watcher_id"]
    r = api.post(f"/api/v1/watchers/{watcher_id}/dead-letters/replay")
    assert r.status_code == 202 and r.json() == {"watcher_id": watcher_id, "requested": 2}
    assert all(api.ok(f"/api/v1/dead-letters/{d}")["replay_requested_at"] for d in (first, second))
    assert api.post(f"/api/v1/watchers/{watcher_id}/dead-letters/replay").json()["requested"] == 0
    r = api.post("/api/v1/watchers/999/dead-letters/replay")
    assert r.status_code == 404 and r.json()["message"] == "no watcher 999"
