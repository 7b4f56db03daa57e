"""A DAG file can neither kill nor freeze Herald (docs/adr/0004-isolation.md, item 4).

Each file is imported first by a child process with a time limit; a file that
exits, loops, is slow or names a broker port out of range is an import error
of its own, at start-up and at reload, while an unrelated canary DAG keeps
running (on SQLite and on PostgreSQL).
"""

from __future__ import annotations

import os
import signal
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Herald
from tests.e2e.standalone_per_db import CANARY_DAG, canary_keeps_running, drop_database, fresh_database

EXITS = """
import os

os._exit(3)
"""

LOOPS = """
while True:
    pass
"""


def plain_dag(dag_id: str) -> str:
    return f"""
from herald import dag, task


@dag(schedule=None)
def {dag_id}():
    @task
    def t():
        return "{dag_id} ran"

    t()


{dag_id}()
"""


def bad_port_dag(dag_id: str) -> str:
    return f"""
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

stream = Asset(
    "{dag_id}_stream",
    watchers=[AssetWatcher("w", MessageQueueTrigger("redis://127.0.0.1:99999/0?stream=s&group=g"))],
)


@dag(schedule=[stream])
def {dag_id}():
    @task
    def t():
        return 1

    t()


{dag_id}()
"""


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def herald(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    """One standalone Herald for the reload cases, with the default time limit and a canary DAG."""
    home = tmp_path_factory.mktemp(f"dagfiles-{request.param}")
    url, dropped = fresh_database(request.param, home)
    h = Herald(Path(home) / "home", url)
    h.write_dag("canary", CANARY_DAG)
    h.start()
    try:
        yield h
    finally:
        if h.proc is not None:
            h.stop()
        drop_database(dropped)


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_herald(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Herald]:
    """A Herald not started yet, for the start-up cases."""
    url, dropped = fresh_database(request.param, tmp_path)
    h = Herald(tmp_path / "home", url)
    h.write_dag("canary", CANARY_DAG)
    try:
        yield h
    finally:
        if h.proc is not None:
            h.stop()
        drop_database(dropped)


def import_error(herald: Herald, path: Path, reason: str) -> str:
    """Wait until `path` is an import error containing `reason`; return the error."""

    def found() -> str | None:
        for row in herald.cli_json("dags", "errors"):
            if row["kind"] == "import_error" and row["fileloc"] == str(path) and reason in row["error"]:
                return str(row["error"])
        return None

    error: str = herald.wait_for(found, 60, f"the import error of {path.name} ({reason})")
    return error


def dag_ids(herald: Herald) -> set[str]:
    return {d["dag_id"] for d in herald.cli_json("dags", "list")}


def test_a_file_calling_os_exit_is_an_import_error_and_herald_goes_on(herald: Herald) -> None:
    name = f"exits_{uuid.uuid4().hex[:8]}"
    path = herald.write_dag(name, EXITS)
    try:
        import_error(herald, path, "exited with code 3 while importing")
        # one log line names the file and the reason
        herald.wait_for(
            lambda: f"DAG file {path} failed to import: exited with code 3" in herald.output(), 30, "the log line"
        )
        # the workers did not import it either: the canary's task runs on them
        canary_keeps_running(herald)
        assert herald.proc is not None and herald.proc.poll() is None
    finally:
        path.unlink()
    herald.wait_for(lambda: not any(r["fileloc"] == str(path) for r in herald.cli_json("dags", "errors")), 60)


def test_a_slow_import_does_not_stall_the_other_dags(herald: Herald) -> None:
    tag = uuid.uuid4().hex[:8]
    gate, started = herald.home / f"gate_{tag}", herald.home / f"started_{tag}"
    slow_id = f"slow_{tag}"
    source = textwrap.dedent(
        f"""
        import os
        import time

        open({str(started)!r}, "a").close()
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.05)
        """
    )
    path = herald.write_dag(slow_id, source + plain_dag(slow_id))
    try:
        herald.wait_for(started.exists, 60, "the slow file's check to start")
        # while its check is still held up, the unrelated DAG runs as usual
        canary_keeps_running(herald)
        assert slow_id not in dag_ids(herald)
        gate.touch()
        herald.wait_for(lambda: slow_id in dag_ids(herald), 60, "the slow DAG once its import ended")
        # its tasks run on workers that imported the checked file
        code, out = herald.cli("dags", "trigger", slow_id)
        assert code == 0, out
        runs = herald.wait_runs(1, slow_id)
        assert [r["state"] for r in runs] == ["success"]
        canary_keeps_running(herald)
    finally:
        path.unlink()


def test_a_bad_broker_port_at_reload_fails_its_file_only_and_deleted_dags_go(herald: Herald) -> None:
    tag = uuid.uuid4().hex[:8]
    gone_id, new_id, bad_id = f"gone_{tag}", f"new_{tag}", f"bad_port_{tag}"
    gone = herald.write_dag(gone_id, plain_dag(gone_id))
    herald.wait_for(lambda: gone_id in dag_ids(herald), 60, "the DAG about to be deleted")

    # in one reload: a file breaks, a DAG file is deleted, another is added
    bad = herald.write_dag(bad_id, bad_port_dag(bad_id))
    gone.unlink()
    new = herald.write_dag(new_id, plain_dag(new_id))
    try:
        error = import_error(herald, bad, "has a bad port")
        assert "redis://127.0.0.1:99999/0" in error
        herald.wait_for(lambda: new_id in dag_ids(herald) and gone_id not in dag_ids(herald), 60, "the reload")
        canary_keeps_running(herald)
    finally:
        bad.unlink()
        new.unlink()


def test_hostile_files_at_start_up_are_import_errors_and_herald_starts(fresh_herald: Herald) -> None:
    herald = fresh_herald
    exits = herald.write_dag("exits", EXITS)
    loops = herald.write_dag("loops", LOOPS)
    bad = herald.write_dag("bad_port", bad_port_dag("bad_port"))
    # small, yet room for a loaded machine to start the interpreter that checks the canary
    herald.start({"HERALD_DAG_FILE_PROCESSOR_TIMEOUT": "3"})
    import_error(herald, exits, "exited with code 3 while importing")
    import_error(herald, loops, "took longer than 3 s to import")
    import_error(herald, bad, "has a bad port")
    assert dag_ids(herald) == {"canary_dag"}
    canary_keeps_running(herald)

    # an infinite loop written at reload: an import error after the limit, nothing frozen
    later = herald.write_dag("loops_later", LOOPS)
    import_error(herald, later, "took longer than 3 s to import")
    canary_keeps_running(herald)


def test_sigterm_while_a_file_is_checked_stops_herald_at_once(tmp_path: Path) -> None:
    herald = Herald(tmp_path / "home", f"sqlite:///{tmp_path}/herald.db")
    pid_file = herald.home / "looping.pid"
    herald.write_dag("loops", f"import os\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n" + LOOPS)
    herald.start({"HERALD_DAG_FILE_PROCESSOR_TIMEOUT": "600"}, wait=False)
    try:
        herald.wait_for(lambda: pid_file.exists() and pid_file.read_text(), 60, "the looping file's check")
        # well under the 600 s limit: the check is killed, not waited for
        assert herald.stop(signal.SIGTERM, timeout=20) == 0
    finally:
        if herald.proc is not None:
            herald.kill()
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
