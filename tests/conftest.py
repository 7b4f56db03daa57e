"""Shared fixtures: real services (fail in CI, skip on a developer's machine), databases."""

from __future__ import annotations

import os
import queue
import socket
import threading
import uuid
from collections.abc import Iterator

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_ADMIN_URL = os.environ.get("HERALD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Fail in CI, skip (saying why) elsewhere, when a service cannot be reached."""
    if reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port} (start it with: make services)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def require_tool(name: str, why: str) -> None:
    """Fail in CI, skip (saying why) elsewhere, when a command the test needs is missing."""
    import shutil

    if shutil.which(name) is not None:
        return
    message = f"{name} is not installed; {why}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


class _Dropper:
    """Drops the tests' PostgreSQL databases on a thread of its own, while the next tests run.

    `DROP DATABASE` waits for a checkpoint of the whole server (every page the
    other tests dirtied is written): seconds while the suite runs, which a test
    need not wait for. The databases are dropped in the order they were handed
    over; the last ones when the session ends.
    """

    def __init__(self) -> None:
        self._names: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def drop(self, name: str) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="drop-test-databases", daemon=True)
            self._thread.start()
        self._names.put(name)

    def _run(self) -> None:
        import psycopg

        while (name := self._names.get()) is not None:
            try:
                with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except psycopg.Error as exc:  # the server went away: nothing left to clean
                print(f"could not drop the test database {name}: {exc}")

    def finish(self) -> None:
        if self._thread is not None:
            self._names.put(None)
            self._thread.join(timeout=300)


_dropper = _Dropper()


def pytest_sessionfinish() -> None:
    _dropper.finish()


def drop_later(name: str) -> None:
    """Drop the test database `name` in the background (see `_Dropper`)."""
    _dropper.drop(name)


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database; dropped afterwards (in the background)."""
    import psycopg

    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"herald_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        drop_later(name)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """The metadata database: each test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/herald.db"  # type: ignore[str-bytes-safe]
    url: str = request.getfixturevalue("pg_database")
    return url


#: directories of the longest tests (kill -9 harnesses at CI size, builds of the wheel):
#: run first, so that the suite does not end waiting on one of them while the other
#: test processes are idle
_LONGEST_FIRST = ("tests/faults/", "tests/packaging/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest tests first (a stable sort: each module's tests stay together, in order)."""

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.replace(os.sep, "/")
        return 0 if path.startswith(_LONGEST_FIRST) else 1

    items.sort(key=rank)
