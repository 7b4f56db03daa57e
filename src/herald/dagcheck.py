"""Check DAG files in separate processes, with a time limit, before Herald imports them.

Herald needs the DAG objects themselves (callables, triggers) in the processes
that use them, so it cannot parse files elsewhere and keep only a serialised
form, as Airflow's DAG processor does. It borrows the processor's isolation
instead: each new or changed file is first imported by a child process of its
own (a few at a time, `HERALD_DAG_PARSING_PROCESSES`), limited to
`HERALD_DAG_FILE_PROCESSOR_TIMEOUT` seconds. Only a file whose child reported
a clean import, and that has not changed since, is imported by Herald (and by
its workers); any other file becomes an import error naming the reason: the
traceback, "exited with code 3 while importing", or "took longer than 30 s to
import". A file that calls `os._exit`, loops forever or breaks the interpreter
ends only its own child.

Verdicts are kept per file and reused while the file's (mtime, size) stay the
same, so a reload checks only the files that changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

#: seconds between two looks at the running checks
_POLL = 0.02
#: checks of one file that changed while being checked, before giving up for this load
_ATTEMPTS = 3


@dataclass(frozen=True)
class Stamp:
    """What identifies one version of a file: its modification time (ns) and size."""

    mtime_ns: int
    size: int


def stamp(path: str) -> Stamp | None:
    """The file's current stamp, or None when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return Stamp(st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one version of a file: `error` is None when it imported cleanly."""

    stamp: Stamp
    error: str | None = None


class CheckerClosed(Exception):
    """The checker was closed (Herald is stopping) while files were being checked."""


def describe_end(code: int) -> str:
    """`exited with code 3` or `was killed by signal SIGSEGV`, for a child's return code."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"was killed by signal {name}"
    return f"exited with code {code}"


@dataclass(eq=False)
class _Child:
    path: str
    stamp: Stamp
    proc: subprocess.Popen[bytes]
    result: Path
    deadline: float
    attempt: int


class FileChecker:
    """Checks DAG files, each in a child process with a time limit, a few at a time.

    Thread-safe to close from another thread: `close` kills the running
    children and makes a `check` in progress raise `CheckerClosed` at once.

    Args:
        timeout: seconds one file may take to import (HERALD_DAG_FILE_PROCESSOR_TIMEOUT).
        processes: files checked at once (HERALD_DAG_PARSING_PROCESSES).
    """

    def __init__(self, timeout: float = 30.0, processes: int = 2) -> None:
        self.timeout = timeout
        self.processes = max(1, processes)
        self._cache: dict[str, Verdict] = {}
        self._children: set[_Child] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def check(self, paths: list[str], folder: Path) -> dict[str, Verdict]:
        """The verdict of each file of `paths` that still exists (cached ones reused).

        Raises:
            CheckerClosed: `close` was called meanwhile.
        """
        verdicts: dict[str, Verdict] = {}
        todo: deque[tuple[str, Stamp, int]] = deque()
        for path in paths:
            current = stamp(path)
            if current is None:
                continue
            cached = self._cache.get(path)
            if cached is not None and cached.stamp == current:
                verdicts[path] = cached
            else:
                todo.append((path, current, 1))
        running: list[_Child] = []
        try:
            while todo or running:
                if self._closed.is_set():
                    raise CheckerClosed("the DAG file checker was closed")
                while todo and len(running) < self.processes:
                    path, current, attempt = todo.popleft()
                    child = self._start(path, current, folder, attempt)
                    if isinstance(child, Verdict):
                        verdicts[path] = child  # not cached: a later load tries again
                    else:
                        running.append(child)
                for child in list(running):
                    verdict = self._finished(child)
                    if verdict is None:
                        continue
                    running.remove(child)
                    now = stamp(child.path)
                    if now is None:
                        continue  # deleted while checked: nothing to import
                    if now != child.stamp:
                        # Written to while it was checked: the verdict is for another version.
                        if child.attempt < _ATTEMPTS:
                            todo.append((child.path, now, child.attempt + 1))
                            continue
                        verdict = Verdict(
                            now, "the file kept changing while it was checked; it is checked again at the next reload"
                        )
                        verdicts[child.path] = verdict  # not cached: the next load checks it again
                        continue
                    verdicts[child.path] = self._cache[child.path] = verdict
                if running:
                    self._closed.wait(_POLL)
        finally:
            for child in running:
                self._kill(child)
        return verdicts

    def retain(self, paths: list[str]) -> None:
        """Forget the verdicts of files other than `paths` (deleted or renamed): the cache never grows."""
        for gone in set(self._cache) - set(paths):
            del self._cache[gone]

    def close(self) -> None:
        """Kill the running checks and refuse new ones (Herald is stopping)."""
        self._closed.set()
        with self._lock:
            children = list(self._children)
        for child in children:
            self._kill(child)

    # -- one child ------------------------------------------------------------------------

    def _start(self, path: str, current: Stamp, folder: Path, attempt: int) -> _Child | Verdict:
        try:
            fd, name = tempfile.mkstemp(prefix="herald-dagcheck-", suffix=".json")
        except OSError as exc:
            return Verdict(current, f"could not make the file a check reports to: {exc}")
        os.close(fd)
        result = Path(name)
        # The child finds this very Herald, however it was put on the path (appended:
        # it must not shadow anything the DAG file imports).
        here = str(Path(__file__).resolve().parent.parent)
        bootstrap = (
            f"import sys; sys.path.append({here!r}); from herald.dagcheck import child_main; child_main(sys.argv[1:4])"
        )
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", bootstrap, path, str(folder), str(result)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                # Its own process group: a timeout ends whatever the file started too,
                # and Ctrl-C in a terminal does not reach it.
                start_new_session=True,
            )
        except OSError as exc:
            result.unlink(missing_ok=True)
            return Verdict(current, f"could not start the process that checks the file: {exc}")
        child = _Child(path, current, proc, result, time.monotonic() + self.timeout, attempt)
        with self._lock:
            self._children.add(child)
        return child

    def _finished(self, child: _Child) -> Verdict | None:
        """The child's verdict once it ended or ran out of time, else None."""
        code = child.proc.poll()
        if code is None:
            if time.monotonic() < child.deadline:
                return None
            self._kill(child)
            return Verdict(
                child.stamp,
                f"took longer than {self.timeout:g} s to import (HERALD_DAG_FILE_PROCESSOR_TIMEOUT); "
                "the process importing it was killed",
            )
        with self._lock:
            self._children.discard(child)
        try:
            report = json.loads(child.result.read_text())
        except (OSError, ValueError):
            report = None
        finally:
            with contextlib.suppress(OSError):
                child.result.unlink()
        if isinstance(report, dict) and report.get("ok") is True:
            return Verdict(child.stamp)
        if isinstance(report, dict) and isinstance(report.get("error"), str):
            return Verdict(child.stamp, report["error"])
        return Verdict(
            child.stamp,
            f"{describe_end(code)} while importing (os._exit, a crash or a signal in the file); "
            "it was checked in a separate process and Herald did not import it",
        )

    def _kill(self, child: _Child) -> None:
        with contextlib.suppress(OSError):
            os.killpg(child.proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            child.proc.kill()
        with contextlib.suppress(Exception):
            child.proc.wait(timeout=5)
        with self._lock:
            self._children.discard(child)
        with contextlib.suppress(OSError):
            child.result.unlink()


def _die_with_parent() -> None:
    """Ask Linux to kill this check if Herald dies (kill -9 included): a looping file never outlives it."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def child_main(args: list[str]) -> None:
    """In the child: import one DAG file, run the checks Herald runs on its DAGs, write the outcome.

    `args` are the file, the DAGs folder and the file to write the outcome to.
    """
    import traceback

    from herald.loader import check_dag, load_file

    path, folder, result = args
    # The DAG file sees a command line of its own, not the checker's arguments.
    sys.argv = [path]
    _die_with_parent()
    sys.path.append(str(Path(folder).resolve()))
    try:
        for dag in load_file(path, Path(folder).resolve()):
            check_dag(dag)
        report: dict[str, object] = {"ok": True}
    except BaseException:
        report = {"ok": False, "error": traceback.format_exc(limit=-8)}
    Path(result).write_text(json.dumps(report))
    # Threads the file started (non-daemon ones too) and its atexit hooks must not
    # hold the check open: its verdict is written.
    os._exit(0)
