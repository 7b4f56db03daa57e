"""Processes started together migrate one at a time: none fails on the other's tables."""

from __future__ import annotations

import threading

from sqlalchemy import inspect

from herald.store.db import make_engine
from herald.store.migrate import upgrade


def test_several_processes_migrating_at_once_all_succeed(pg_database: str) -> None:
    engines = [make_engine(pg_database) for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(engines))

    def migrate(engine: object) -> None:
        start.wait()
        try:
            upgrade(engine)  # type: ignore[arg-type]
        except BaseException as exc:  # collected: the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert errors == []
        assert "dag_run" in inspect(engines[0]).get_table_names()
    finally:
        for engine in engines:
            engine.dispose()
