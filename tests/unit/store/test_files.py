"""Herald's files and its wake-up socket are private to their user (`herald.store.files`, `herald.notify`)."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from herald import notify
from herald.store.db import make_engine
from herald.store.files import private_home
from herald.store.migrate import upgrade

WAIT = 10.0


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The common umask 022, which makes 0755 folders and 0644 files: privacy must not depend on it."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_fresh_home_and_its_database_are_private(tmp_path: Path, loose_umask: None) -> None:
    home = tmp_path / "shared" / "home"
    private_home(home)
    engine = make_engine(f"sqlite:///{home}/herald.db")
    try:
        upgrade(engine)
        with engine.connect() as conn:  # WAL mode: the -wal and -shm files exist while it is open
            conn.execute(text("SELECT count(*) FROM dag_run"))
            assert (home / "herald.db-wal").exists() and (home / "herald.db-shm").exists()
            assert {name: mode(home / name) for name in ("herald.db", "herald.db-wal", "herald.db-shm")} == {
                "herald.db": 0o600,
                "herald.db-wal": 0o600,
                "herald.db-shm": 0o600,
            }
    finally:
        engine.dispose()
    assert mode(home) == 0o700
    assert mode(tmp_path / "shared") == 0o700  # made by Herald too


def test_an_existing_open_home_is_tightened_once_with_one_warning(
    tmp_path: Path, loose_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    (home / "herald.toml").write_text("[herald]\nlog_level = 'INFO'\n")
    with sqlite3.connect(home / "herald.db") as made_before:  # as an older Herald left it: 0644
        made_before.execute("PRAGMA journal_mode=WAL")
        made_before.execute("CREATE TABLE t (x)")
        made_before.execute("INSERT INTO t VALUES (1)")
        made_before.commit()
        assert mode(home / "herald.db") == 0o644 and mode(home) == 0o755
        caplog.set_level(logging.WARNING, logger="herald.files")
        private_home(home)
        engine = make_engine(f"sqlite:///{home}/herald.db")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT x FROM t")).scalar_one() == 1  # still readable by its owner
        engine.dispose()
    assert mode(home) == 0o700
    assert mode(home / "herald.db") == 0o600 and mode(home / "herald.toml") == 0o600
    warned = [r.getMessage() for r in caplog.records if r.name == "herald.files"]
    assert len(warned) == 2  # the home with its conf, then the database files
    assert all("private" in w for w in warned) and str(home / "herald.db") in warned[1]
    caplog.clear()
    private_home(home)
    make_engine(f"sqlite:///{home}/herald.db").dispose()
    assert not [r for r in caplog.records if r.name == "herald.files"]  # once: nothing left to tighten


def _listen_and_check(url: str) -> str:
    """Start a listener, wake it through its socket; returns the socket's path."""

    async def scenario() -> str:
        listener = notify.make_listener(url)
        woken = listener.event(notify.SCHEDULER)
        listener.start()
        try:
            assert isinstance(listener, notify.SocketListener)
            path = listener.path
            info = os.stat(path)
            assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
            notify.notify(url, notify.SCHEDULER)
            await asyncio.wait_for(woken.wait(), WAIT)
            return path
        finally:
            listener.stop()

    return asyncio.run(scenario())


def test_the_wake_up_socket_lives_in_the_private_home(tmp_path: Path, loose_umask: None) -> None:
    home = tmp_path / "home"
    private_home(home)
    path = _listen_and_check(f"sqlite:///{home}/herald.db")
    assert path == str(home / "herald.db.sock")
    assert not path.startswith("/tmp/herald-") and not os.path.exists(path)


def test_a_database_in_a_shared_folder_gets_its_socket_in_a_private_folder(tmp_path: Path, loose_umask: None) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    too_long = tmp_path / ("x" * 120)
    private_home(too_long)  # private, but its socket path would not fit in a Unix address
    for url in (f"sqlite:///{shared}/herald.db", f"sqlite:///{too_long}/herald.db"):
        path = _listen_and_check(url)
        folder = os.path.dirname(path)
        assert folder not in (str(shared), str(too_long))
        assert len(os.fsencode(path)) <= notify.SUN_PATH_MAX
        info = os.lstat(folder)
        assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700
