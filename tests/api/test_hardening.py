"""Issue 13's smaller holes, through the API on SQLite and PostgreSQL: headers, docs, bad input, keys, names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import insert

from herald.loader import DagBag
from herald.store import tables as t
from herald.store.sync import sync_bag
from herald.store.types import utcnow
from tests.api.conftest import Api


def test_every_answer_has_the_security_headers_and_the_docs_page_loads_nothing_from_a_cdn(api_any_db: Api) -> None:
    api = api_any_db
    answers = [
        api.client.get("/api/v1/health"),
        api.client.get("/"),
        api.client.get("/ui/app.js"),
        api.get("/api/v1/dags"),
        api.get("/api/v1/dags", token=None),  # 401
        api.client.get("/api/v1/nowhere"),  # 404
    ]
    for r in answers:
        assert r.headers["x-frame-options"] == "DENY", r.request.url
        assert r.headers["x-content-type-options"] == "nosniff"
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
    assert [r.status_code for r in answers] == [200, 200, 200, 200, 401, 404]
    # the UI has no inline script, which the policy would block
    assert "<script>" not in api.client.get("/").text
    docs = api.client.get("/api/v1/docs")  # Swagger UI from the package, started by a file
    assert docs.status_code == 200 and "<script>" not in docs.text and "//cdn" not in docs.text
    assert api.client.get("/api/v1/docs/static/swagger-ui-bundle.js").status_code == 200
    assert api.client.get("/api/v1/openapi.json").json()["info"]["title"] == "Herald"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/dags/a%00b",
        "/api/v1/runs?dag_id=a%00b",
        "/api/v1/events?asset=or%00ders",
        "/api/v1/assets/or%00ders",
        "/api/v1/runs/x%00y/tasks/t/log",
    ],
)
def test_a_nul_in_a_path_or_query_is_400_not_500(api_any_db: Api, path: str) -> None:
    r = api_any_db.get(path)
    assert r.status_code == 400, r.text
    assert "NUL" in r.json()["message"] and r.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize(
    "query",
    [
        "since=0001-01-01T00:00:00%2B01:00",
        "until=9999-12-31T23:59:59-01:00",
        "since=0001-01-01T00:30:00%2B14:00",
    ],
)
def test_a_time_with_no_utc_form_is_400_not_500(api_any_db: Api, query: str) -> None:
    for endpoint in ("/api/v1/events", "/api/v1/runs"):
        r = api_any_db.get(f"{endpoint}?{query}")
        assert r.status_code == 400, (endpoint, r.text)
        assert "out of range" in r.json()["message"]
    # the far ends themselves, in UTC, are fine
    assert api_any_db.get("/api/v1/events?since=0001-01-01T00:00:00Z&until=9999-12-31T23:59:59Z").status_code == 200


def test_the_same_idempotency_key_with_another_body_is_409(api_any_db: Api) -> None:
    api = api_any_db
    key = {"Idempotency-Key": "order-8-created"}
    first = api.post("/api/v1/assets/orders/events", json={"extra": {"n": 1, "s": "é"}}, headers=key)
    again = api.post("/api/v1/assets/orders/events", json={"extra": {"s": "é", "n": 1}}, headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    other = api.post("/api/v1/assets/orders/events", json={"extra": {"n": 2}}, headers=key)
    assert other.status_code == 409, other.text
    assert "another body" in other.json()["message"] and "new key" in other.json()["hint"]
    empty = api.post("/api/v1/assets/orders/events", json={}, headers=key)
    assert empty.status_code == 409
    assert len(api.ok("/api/v1/events")["items"]) == 1


def test_an_asset_whose_name_holds_a_slash_is_found(api_any_db: Api) -> None:
    api = api_any_db
    with api.engine.begin() as conn:
        conn.execute(insert(t.asset).values(name="raw/orders/2024", uri="s3://b/raw", created_at=utcnow()))
    for name in ("raw%2Forders%2F2024", "raw/orders/2024"):
        assert api.ok(f"/api/v1/assets/{name}")["name"] == "raw/orders/2024"
        counts = api.ok(f"/api/v1/assets/{name}/event-counts?minutes=5&buckets=5")
        assert len(counts) == 5
    made = api.post("/api/v1/assets/raw%2Forders%2F2024/events", json={"extra": {"n": 1}})
    assert made.status_code == 201, made.text
    assert made.json()["asset"] == "raw/orders/2024"
    assert api.ok("/api/v1/assets/raw%2Forders%2F2024")["event_count"] == 1
    # a name that only looks like the suffix routes still reaches its own asset
    assert api.ok("/api/v1/assets/orders")["name"] == "orders"
    assert api.get("/api/v1/assets/raw/nope").status_code == 404


def test_import_errors_shown_by_the_api_are_masked(api_any_db: Api, tmp_path: Path) -> None:
    api = api_any_db
    error = (
        'Traceback (most recent call last):\n  File "/dags/bad.py", line 2\n'
        '    trigger = make(url="kafka://k:9092/t?sasl_password=api-pw1", token="api-tk2")\n'
        "ValueError: no broker at amqp://me:api-pw3@h:5672/\n"
    )
    sync_bag(api.engine, DagBag(folder=tmp_path, errors={"/dags/bad.py": error}))
    shown = api.ok("/api/v1/import-errors")["items"]
    assert [e["fileloc"] for e in shown] == ["/dags/bad.py"]
    text = json.dumps(shown)
    assert "api-pw1" not in text and "api-tk2" not in text and "api-pw3" not in text
    assert "amqp://me:***@h:5672/" in shown[0]["error"] and "sasl_password=***" in shown[0]["error"]
