"""The DAG file checker: each file imported in a child process with a time limit (herald.dagcheck)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from herald.dagcheck import CheckerClosed, FileChecker, stamp
from herald.loader import load_folder

GOOD = """
from herald import dag, task

with open({counter!r}, "a") as f:
    f.write("x")


@dag(schedule=None)
def {name}():
    @task
    def t():
        return 1

    t()


{name}()
"""


def write(folder: Path, name: str, source: str) -> str:
    path = folder / f"{name}.py"
    path.write_text(source)
    return str(path)


def good(folder: Path, name: str, counter: Path) -> str:
    return write(folder, name, GOOD.format(name=name, counter=str(counter)))


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie not yet reaped by its (killed) parent counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def wait_until(check: object, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_clean_file_passes_and_its_verdict_is_reused_until_it_changes(tmp_path: Path) -> None:
    counter = tmp_path / "imports"
    path = good(tmp_path, "fine", counter)
    checker = FileChecker(timeout=20)

    assert checker.check([path], tmp_path)[path].error is None
    assert counter.read_text() == "x"  # imported once, in the child
    assert checker.check([path], tmp_path)[path].error is None
    assert counter.read_text() == "x"  # same (mtime, size): not checked again

    Path(path).write_text(Path(path).read_text() + "\n# changed\n")
    verdict = checker.check([path], tmp_path)[path]
    assert verdict.error is None and verdict.stamp == stamp(path)
    assert counter.read_text() == "xx"


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("raise ValueError('broken on purpose')\n", "ValueError: broken on purpose"),
        ("import sys\nsys.exit(0)\n", "SystemExit: 0"),
        ("import os\nos._exit(3)\n", "exited with code 3 while importing"),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", "was killed by signal SIGKILL while importing"),
    ],
)
def test_a_failing_file_gets_its_reason(tmp_path: Path, source: str, reason: str) -> None:
    path = write(tmp_path, "bad", source)
    error = FileChecker(timeout=20).check([path], tmp_path)[path].error
    assert error is not None and reason in error


def test_a_file_past_the_time_limit_is_killed_with_what_it_started(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    path = write(
        tmp_path,
        "loops",
        "import os, subprocess\n"
        "child = subprocess.Popen(['sleep', '600'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "while True:\n    pass\n",
    )
    error = FileChecker(timeout=1).check([path], tmp_path)[path].error
    assert error is not None and "took longer than 1 s to import" in error
    assert "HERALD_DAG_FILE_PROCESSOR_TIMEOUT" in error
    for pid in map(int, pids.read_text().split()):
        wait_until(lambda pid=pid: pid_gone(pid), f"process {pid} to end")


def test_files_are_checked_side_by_side(tmp_path: Path) -> None:
    # `waits` finishes only once `signals` was imported: checked one after the other,
    # it would run out of time.
    marker = tmp_path / "signalled"
    waits = write(
        tmp_path,
        "waits",
        f"import os, time\nwhile not os.path.exists({str(marker)!r}):\n    time.sleep(0.01)\n",
    )
    signals = write(tmp_path, "signals", f"open({str(marker)!r}, 'w').close()\n")
    verdicts = FileChecker(timeout=15, processes=2).check([waits, signals], tmp_path)
    assert verdicts[waits].error is None
    assert verdicts[signals].error is None


def test_close_stops_a_check_in_progress(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    path = write(
        tmp_path,
        "hangs",
        f"import os\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\nwhile True:\n    pass\n",
    )
    checker = FileChecker(timeout=600)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            checker.check([path], tmp_path)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    wait_until(lambda: pid_file.exists() and pid_file.read_text(), "the check to start")
    checker.close()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], CheckerClosed)
    pid = int(pid_file.read_text())
    wait_until(lambda: pid_gone(pid), "the checking process to end")


def test_load_folder_imports_only_what_passed_the_check(tmp_path: Path) -> None:
    counter = tmp_path / "imports"
    folder = tmp_path / "dags"
    folder.mkdir()
    fine = good(folder, "fine_dag", counter)
    exits = write(folder, "exits", "import os\nos._exit(3)\n")
    bag = load_folder(folder, checker=FileChecker(timeout=20))
    assert set(bag.dags) == {"fine_dag"}
    assert "exited with code 3 while importing" in bag.errors[exits]
    assert set(bag.files) == {fine}
    assert counter.read_text() == "xx"  # once in the child, once here


def test_workers_import_only_the_checked_versions(tmp_path: Path) -> None:
    counter = tmp_path / "imports"
    folder = tmp_path / "dags"
    folder.mkdir()
    one = good(folder, "one", counter)
    two = good(folder, "two", counter)
    checked = load_folder(folder).files
    assert set(checked) == {one, two}

    assert set(load_folder(folder, only={one: checked[one]}).dags) == {"one"}
    Path(one).write_text(Path(one).read_text() + "\n# changed after the check\n")
    assert set(load_folder(folder, only=checked).dags) == {"two"}


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://127.0.0.1:99999/0?stream=s&group=g", "redis://127.0.0.1:99999/0"),
        ("amqp://127.0.0.1:99999/?queue=q", "amqp://127.0.0.1:99999/"),
        ("kafka://127.0.0.1:99999/topic", "127.0.0.1:99999"),
        ("nats://127.0.0.1:99999/subject", "nats://127.0.0.1:99999"),
    ],
)
def test_a_broker_port_out_of_range_is_an_import_error_of_its_file(tmp_path: Path, url: str, address: str) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    good(folder, "fine_dag", tmp_path / "imports")
    path = write(
        folder,
        "bad_port",
        "from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task\n"
        f"a = Asset('a', watchers=[AssetWatcher('w', MessageQueueTrigger({url!r}))])\n"
        "@dag(schedule=[a])\n"
        "def bad_port():\n"
        "    @task\n"
        "    def t():\n"
        "        return 1\n"
        "    t()\n"
        "bad_port()\n",
    )
    bag = load_folder(folder, checker=FileChecker(timeout=20))
    assert set(bag.dags) == {"fine_dag"}
    assert f"the address {address!r} has a bad port: Port out of range" in bag.errors[path]
