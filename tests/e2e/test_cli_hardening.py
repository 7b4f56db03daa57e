"""The CLI shows no secret and obeys no escape: tokens, task logs, JSON, publish and `herald api` (issue 13)."""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, insert

from herald.config import normalise_database_url
from herald.store import tables as t
from herald.store.db import make_engine
from herald.store.migrate import upgrade
from herald.store.tokens import expiry, lookup
from herald.store.types import utcnow
from tests.e2e.conftest import HERALD, Herald


def engine_of(herald: Herald) -> Engine:
    engine = make_engine(normalise_database_url(herald.env["HERALD_DATABASE_URL"]), pool_size=0)
    upgrade(engine)
    return engine


def test_token_names_are_unique_revoked_one_at_a_time_and_can_expire(herald: Herald) -> None:
    code, out = herald.cli("tokens", "create", "--scope", "read", "--name", "ci")
    assert code == 0, out
    code, out = herald.cli("tokens", "create", "--scope", "write", "--name", "ci")
    assert code == 1 and "a token named 'ci' exists" in out and "Traceback" not in out
    # without --name, each token still gets a name of its own
    for _ in range(2):
        assert herald.cli("tokens", "create", "--scope", "read")[0] == 0
    listed = herald.cli_json("tokens", "list")
    assert sorted(x["name"] for x in listed) == ["ci", "read-token", "read-token-2"]
    code, out = herald.cli("tokens", "create", "--scope", "read", "--name", "short", "--expires-in", "30d")
    assert code == 0, out
    token = out.splitlines()[0]
    until = expiry(token)
    assert until is not None and abs(until - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)
    assert "expires at" in out
    code, out = herald.cli("tokens", "create", "--scope", "read", "--expires-in", "3 days")
    assert code == 2 and "--expires-in '3 days' is not a duration" in out
    # a name two old tokens share (made before names were unique) is revoked by id
    engine = engine_of(herald)
    try:
        with engine.begin() as conn:
            for n in range(2):
                conn.execute(
                    insert(t.api_token).values(
                        name="old", token_hash=f"h{n}-{uuid.uuid4().hex}", scope="read", created_at=utcnow()
                    )
                )
    finally:
        engine.dispose()
    code, out = herald.cli("tokens", "revoke", "old")
    assert code == 1 and "2 tokens are named 'old'" in out and "--id" in out
    old_id = next(x["id"] for x in herald.cli_json("tokens", "list") if x["name"] == "old")
    code, out = herald.cli("tokens", "revoke", "--id", str(old_id))
    assert code == 0 and "'old'" in out
    assert herald.cli("tokens", "revoke", "old")[0] == 0
    assert herald.cli("tokens", "revoke", "ci")[0] == 0
    names = sorted(x["name"] for x in herald.cli_json("tokens", "list"))
    assert names == ["read-token", "read-token-2", "short"]


def test_tasks_logs_print_no_terminal_escapes_and_json_listings_are_strict(herald: Herald) -> None:
    engine = engine_of(herald)
    run_id = f"manual__{uuid.uuid4().hex}"
    try:
        with engine.begin() as conn:
            pk = conn.execute(
                insert(t.dag_run)
                .values(run_id=run_id, dag_id="d", state="failed", run_type="manual", conf={}, queued_at=utcnow())
                .returning(t.dag_run.c.id)
            ).scalar_one()
            conn.execute(
                insert(t.task_instance).values(
                    run_pk=pk,
                    dag_id="d",
                    task_id="t",
                    state="failed",
                    try_number=1,
                    max_tries=1,
                    log="plain \x1b[2J\x1b[31mred\x1b[0m \x1b]0;pwned\x07title\rhidden\nnext\n",
                    error="Boom\x1b[8m concealed",
                )
            )
            if engine.dialect.name == "sqlite":  # PostgreSQL refuses NaN in JSON: only SQLite can hold one
                asset_id = conn.execute(
                    insert(t.asset)
                    .values(name="nan_asset", uri="nan_asset", created_at=utcnow())
                    .returning(t.asset.c.id)
                ).scalar_one()
                conn.execute(
                    insert(t.asset_event).values(
                        asset_id=asset_id, source="cli", extra={"v": float("nan")}, timestamp=utcnow()
                    )
                )
    finally:
        engine.dispose()
    code, out = herald.cli("tasks", "logs", run_id, "t")
    assert code == 0, out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert "plain red title" in out and "hidden\nnext" in out and "Boom concealed" in out
    result = herald.run_cli_process("events", "list", "--output", "json")
    assert result.returncode == 0, result.stderr
    events = json.loads(result.stdout, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    if herald.env["HERALD_DATABASE_URL"].startswith("sqlite"):
        assert events[0]["extra"] == {"v": "NaN"}


def test_publish_never_prints_the_urls_secrets(herald: Herald) -> None:
    url = "redis://me:pub-pw1@127.0.0.1:1/0?stream=s&password=pub-pw2"
    result = herald.run_cli_process("publish", url, "hi")
    shown = result.stdout + result.stderr
    assert result.returncode == 1 and "could not publish to redis://me:***@127.0.0.1:1/0?stream=s&password=***" in shown
    assert "pub-pw1" not in shown and "pub-pw2" not in shown and "Traceback" not in shown


def test_herald_api_prints_the_admin_token_it_creates_once(herald: Herald) -> None:
    def start() -> list[str]:
        """`herald api` until it says it serves; returns what it printed."""
        with subprocess.Popen(
            [HERALD, "api", "--port", str(herald.port)],
            env=herald.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as proc:
            assert proc.stdout is not None
            lines: list[str] = []
            for line in proc.stdout:  # the token line, if any, comes before this one
                lines.append(line)
                if "Herald API on" in line:
                    break
            proc.terminate()
            proc.wait(30)
        return lines

    first = start()
    tokens = [x.split("admin token:")[1].strip() for x in first if "admin token:" in x]
    assert len(tokens) == 1 and tokens[0].startswith("hrld_"), first
    engine = engine_of(herald)
    try:
        with engine.connect() as conn:
            found = lookup(conn, tokens[0])
    finally:
        engine.dispose()
    assert found is not None and (found.name, found.scope) == ("admin", "write")
    second = start()
    assert not any("admin token:" in x for x in second), second
