"""Fuzzing a running Herald (issue 13): generated messages, headers, webhook bodies and task outputs.

Hypothesis throws payloads of odd shapes (deep, NaN and Infinity, lone
surrogates, NUL, huge strings, binary, not JSON at all), odd headers and
webhook requests at one standalone per database, with a DAG that prints and
returns what each message asks for. Then every message must have ended as
exactly one event or exactly one dead letter, every run of the fuzzed DAG must
have finished, the listings must answer, and an unrelated canary DAG must
still run. Examples are derandomized (the same ones every run, in CI too) and
bounded in number; the messages are published as they are generated and
checked together at the end, so the whole test takes seconds.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import Herald
from tests.e2e.standalone_per_db import CANARY_DAG, api, canary_keeps_running, standalone

DAGS = (
    """
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

fuzz = Asset("fuzz", watchers=[AssetWatcher("fuzz_local", MessageQueueTrigger("local://fuzz"))])


@dag(schedule=[fuzz])
def fuzz_dag():
    @task
    def echo(triggering_asset_events):
        payload = triggering_asset_events[fuzz][0].extra["payload"]
        if not isinstance(payload, dict):
            print(repr(payload)[:2000])
            return payload
        print(payload.get("print", ""))
        size = payload.get("print_size")
        if isinstance(size, int) and 0 < size <= 3_000_000:
            print("y" * size)
        if payload.get("fail"):
            raise RuntimeError(str(payload.get("print", ""))[:500])
        return payload.get("return")

    echo()


fuzz_dag()
"""
    + CANARY_DAG
)

ODD_TEXT = st.text(st.characters(codec=None, categories=None), max_size=40) | st.sampled_from(
    ["\x00", "a\x00b", "\ud800", "\udfff", "\u202e", "\ufeff", "é" * 10, "\x1b[31mred"]
)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | FLOATS | ODD_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(ODD_TEXT, children, max_size=4),
    max_leaves=12,
)


def _deep(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _dump(value: Any) -> bytes:
    # NaN/Infinity written as JSON extensions, lone surrogates as \\ud800 escapes: what brokers may carry
    return json.dumps(value, allow_nan=True).encode()


BODIES = st.one_of(
    JSON_VALUES.map(_dump),
    st.dictionaries(ODD_TEXT, JSON_VALUES, max_size=3).map(lambda d: _dump({"return": d, "print": str(d)[:200]})),
    st.builds(
        lambda text, size, fail: _dump({"print": text, "print_size": size, "fail": fail}),
        ODD_TEXT,
        st.sampled_from([0, 10, 2_000_000]),
        st.booleans(),
    ),
    st.integers(min_value=1, max_value=300).map(_deep),
    st.sampled_from([1_500_000, 100_000]).map(lambda n: _dump({"big": "h" * n})),
    st.binary(max_size=64),
    st.sampled_from([b"", b"not json", b"{", b'{"v": NaN}', b"\xff\xfe", b'"\\ud800"', b'{"n": 1e400}']),
)
HEADERS = st.dictionaries(
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=60),
    max_size=3,
)
#: header values a client can put on the wire (latin-1), odd ones included
WIRE_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80)
WEBHOOK_BODIES = st.one_of(
    JSON_VALUES.map(lambda v: _dump({"extra": {"payload": v}})),
    st.integers(min_value=1, max_value=300).map(lambda d: b'{"extra": ' + _deep(d) + b"}"),
    st.binary(max_size=64),
    st.just(b'{"extra": {"blob": "' + b"w" * 1_200_000 + b'"}}'),
)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def herald(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    with standalone(request.param, tmp_path_factory, DAGS, {}) as h:
        yield h


def _outcomes(herald: Herald, keys: list[str]) -> dict[str, list[str]]:
    """For each published message's key: what it became (events and dead letters of the fuzz watcher)."""
    from sqlalchemy import select

    from herald.config import normalise_database_url
    from herald.store import tables as t
    from herald.store.db import make_engine

    # A local:// message's dedupe key is the key its publisher made (local_publish returns them),
    # kept with its event and its dead letter.
    found: dict[str, list[str]] = {k: [] for k in keys}
    engine = make_engine(normalise_database_url(herald.env["HERALD_DATABASE_URL"]), pool_size=0)
    try:
        with engine.connect() as conn:
            watcher = conn.execute(select(t.watcher.c.id).where(t.watcher.c.name == "fuzz_local")).scalar_one()
            for key in conn.execute(
                select(t.asset_event.c.dedupe_key).where(t.asset_event.c.source == f"watcher:{watcher}")
            ).scalars():
                if key in found:
                    found[key].append("event")
            for key in conn.execute(
                select(t.dead_letter.c.dedupe_key).where(t.dead_letter.c.watcher_id == watcher)
            ).scalars():
                if key in found:
                    found[key].append("dead letter")
    finally:
        engine.dispose()
    return found


def test_generated_messages_each_end_as_one_event_or_one_dead_letter(herald: Herald) -> None:
    from herald.config import Settings
    from herald.publishing import local_publish

    published: dict[str, bytes] = {}
    client = Settings(home=herald.home, database_url=herald.env["HERALD_DATABASE_URL"])

    @settings(
        max_examples=50,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(bodies=st.lists(BODIES, min_size=1, max_size=3), headers=HEADERS)
    @example(bodies=[b'{"return": {"ok": 1}}', b'{"v": NaN}', b"x" * 1_500_000], headers={"h": "a\x00b"})
    def publish(bodies: list[bytes], headers: dict[str, str]) -> None:
        for key, body in zip(local_publish("fuzz", bodies, headers, settings=client), bodies, strict=True):
            published[key] = body

    publish()

    def settled() -> dict[str, list[str]] | None:
        found = _outcomes(herald, list(published))
        return found if all(found.values()) else None

    outcomes = herald.wait_for(settled, 120, f"all {len(published)} fuzzed messages to be handled")
    wrong = {k: v for k, v in outcomes.items() if len(v) != 1}
    assert not wrong, {k: (v, published[k][:200]) for k, v in wrong.items()}
    assert any(v == ["event"] for v in outcomes.values()) and any(v == ["dead letter"] for v in outcomes.values())

    # every run the events made finishes: no try or pass was stopped by what a task printed or returned
    herald.wait_for(
        lambda: all(r["state"] in ("success", "failed") for r in herald.runs("fuzz_dag")),
        120,
        "every run of the fuzzed DAG to finish",
    )
    for path in ("/events?limit=1000", "/dead-letters?limit=1000", "/runs?limit=1000", "/watchers"):
        status, answer = api(herald, path)
        assert status == 200, (path, answer)
    canary_keeps_running(herald)


def test_generated_webhook_requests_never_fail_the_server(herald: Herald) -> None:
    answered: list[int] = []

    @settings(max_examples=40, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(body=WEBHOOK_BODIES, key=WIRE_TEXT, asset=WIRE_TEXT | st.just("fuzz"))
    @example(body=b'{"extra": {"ok": 1}}', key="", asset="fuzz")
    @example(body=b'{"extra": {"v": NaN}}', key="k\xe9y", asset="fuzz")
    @example(body=b'{"extra": {"blob": "' + b"w" * 1_200_000 + b'"}}', key="", asset="fuzz")
    def post(body: bytes, key: str, asset: str) -> None:
        headers = {"Idempotency-Key": key} if key.strip() else {}
        status, answer = api(herald, f"/assets/{urllib.parse.quote(asset, safe='')}/events", body, headers)
        assert status < 500, (status, answer, body[:200], key, asset)
        answered.append(status)

    post()

    assert 201 in answered and 413 in answered and 422 in answered
    status, _ = api(herald, "/events?limit=1000")
    assert status == 200
    canary_keeps_running(herald)
