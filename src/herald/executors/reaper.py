"""A worker process ends whatever its tries leave behind.

What a task starts - `sleep 1000 &` from bash, a Python subprocess it never
waits for, a daemon that forks twice - must not outlive the try. A fork per try
would give each try a process group of its own, but costs about ten times the
throughput of short tasks. Instead each worker process (`worker_main` in the
local pool, used by `herald standalone` and `herald worker`, and each Celery
pool process) arranges once, when it starts, that it can find and end them
(`WorkerKeeper.start`), and runs its tries itself as before:

- it is a **child subreaper** (Linux's PR_SET_CHILD_SUBREAPER): a process its
  try started whose parent exits (the daemon's double fork, the shell of
  `sh -c 'sleep 1000 &'`) is given to the worker, not to init. After each try -
  returned, raised, or stopped by Celery's soft time limit - everything under
  the worker but its guard is left over: the worker sends it SIGTERM, SIGKILL
  after a short grace, and reaps it (`WorkerKeeper.end_leftovers`). With
  nothing left over, which is the usual case, this costs one read of /proc.
- it **leads a process group of its own**, and a **guard** (a tiny shell
  spawned in that group without copying the worker's memory) waits on a pipe
  only the worker holds open. When the worker dies - SIGKILLed by the executor
  for a timeout or a cancelled run, by its PR_SET_PDEATHSIG after a SIGKILL of
  Herald, by the OOM killer - the kernel closes the pipe and the guard kills the
  group: the worker's try and what it started, unless that left the group on
  purpose (`setsid`). While the worker lives it holds the group's id, and after
  it dies the guard does until the kill, so nobody signals a group id the system
  gave to someone else.
- the executor that kills a worker for a timeout or a cancel first stops and
  kills every process under it (`end_tree`): with the worker a subreaper that
  includes what left the group.

The gap: a process that left the group (`setsid`) while Herald is SIGKILLed in
the middle of its try is under nothing Herald runs any more; a service manager
that ends the whole unit (systemd's default, a container) ends it.

Elsewhere than Linux the group and the guard still work; the sweep after a try
and `end_tree` find nothing (no /proc) and do nothing.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["WorkerKeeper", "become_subreaper", "die_with_parent", "end_tree", "running"]

log = logging.getLogger("herald.worker")

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
#: how long what a try left behind has after SIGTERM before SIGKILL (a daemon's clean-up)
LEFTOVER_GRACE = 2.0
#: how long SIGKILLed processes have to go before the worker gives up on them (uninterruptible I/O)
KILL_WAIT = 5.0
#: between two looks at what is still running while waiting for it to end
_POLL = 0.005

#: the guard: ignores the signals a terminal or a stray kill would send, waits for
#: end-of-file on its stdin (the worker's pipe), then kills its whole process group.
_GUARD_SCRIPT = "trap '' INT TERM HUP; read -r _; kill -9 0"


@functools.cache
def _prctl() -> Any:
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send `sig` to this process when its parent dies (kill -9 included).

    Elsewhere this does nothing: a worker still exits when its pipe closes.
    """
    prctl = _prctl()
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def become_subreaper() -> bool:
    """Make orphaned descendants of this process its children (Linux); False where that is not possible."""
    prctl = _prctl()
    if prctl is None:
        return False
    return bool(prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


@functools.cache
def _children_files() -> bool:
    """Whether this kernel lists each task's children in /proc (CONFIG_PROC_CHILDREN)."""
    return os.path.exists(f"/proc/self/task/{threading.get_native_id()}/children")


def _children(pid: int) -> list[int]:
    """The children of `pid` (every thread's), from /proc; [] where there is no /proc."""
    if _children_files():
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return []
        found: list[int] = []
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/children", "rb") as fh:
                    found.extend(int(p) for p in fh.read().split())
            except OSError:
                continue
        return found
    return [p for p, ppid in _scan() if ppid == pid]


def _scan() -> list[tuple[int, int]]:
    """(pid, parent pid) of every process: the slow way, for kernels without the children files."""
    found: list[tuple[int, int]] = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if name.isdigit():
                stat = _stat(int(name))
                if stat is not None:
                    found.append((int(name), int(stat[1])))
    return found


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read()
    except OSError:
        return None
    return text.rsplit(b")", 1)[1].decode().split()


def running(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped counts as ended)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", "rb") as fh:
            return fh.read().decode(errors="replace").strip()
    except OSError:
        return "?"


def _tree(roots: list[int]) -> list[int]:
    """`roots` and every process under them, parents before their children."""
    found: list[int] = []
    seen: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop(0)
        if pid in seen:
            continue
        seen.add(pid)
        found.append(pid)
        todo.extend(_children(pid))
    return found


def _signal(pids: list[int], sig: int) -> None:
    # Between reading a pid and signalling it the process may end; its pid is not
    # given to another process before its parent reaps it, and the parents here are
    # the worker (which reaps only after) or processes being killed with it.
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def end_tree(pid: int, timeout: float = KILL_WAIT) -> None:
    """Kill `pid` and every process under it: a worker the executor stops, and what its try started.

    The worker is stopped first, so that its try forks no more, and killed last: as
    a subreaper it collects what its try's processes leave orphaned meanwhile, so
    nothing can slip out from under it. Gives up on a process that does not end
    within `timeout` seconds (stuck in uninterruptible I/O).
    """
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while True:
        under = [p for p in _tree(_children(pid)) if running(p)]
        if not under:
            break
        # What one of them forked since this look is orphaned by the kill and comes to
        # the (stopped) worker, where the next look finds it.
        _signal(under, signal.SIGSTOP)
        _signal(under, signal.SIGKILL)
        if time.monotonic() > deadline:
            log.warning("processes %s under worker %s did not end when killed", under, pid)
            break
        time.sleep(_POLL)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


@dataclass
class WorkerKeeper:
    """What a worker process holds to end what its tries leave behind (see the module's docstring).

    Attributes:
        guard: the guard's pid (it never counts as left over).
        pipe: the write end of the pipe the guard waits on; the worker keeps it open.
        subreaper: whether orphaned descendants come to this process (Linux).
    """

    guard: int
    pipe: int
    subreaper: bool

    @classmethod
    def start(cls) -> WorkerKeeper:
        """Lead a new process group, become a subreaper, and start the group's guard.

        A process that still is in someone else's group afterwards gets no guard: the
        guard would kill that group.
        """
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
        subreaper = become_subreaper()
        if os.getpgrp() != os.getpid():
            log.warning("this worker cannot lead a process group: what a try starts may outlive the worker's death")
            return cls(guard=-1, pipe=-1, subreaper=subreaper)
        read_end, write_end = os.pipe()
        try:
            guard = _start_guard(read_end, os.getpgrp())
        finally:
            os.close(read_end)
        keeper = cls(guard=guard, pipe=write_end, subreaper=subreaper)
        # A process forked by a task (multiprocessing's fork, os.fork) would keep the
        # pipe open and the guard waiting after the worker's death: it closes its copy.
        os.register_at_fork(after_in_child=keeper._forked)
        return keeper

    def _forked(self) -> None:
        if self.pipe >= 0:
            _close_quietly(self.pipe)
            self.pipe = -1

    def leftovers(self) -> list[int]:
        """This worker's child processes other than its guard: none, unless a try left some."""
        me = os.getpid()
        return [p for p in _children(me) if p != self.guard]

    def end_leftovers(self, grace: float = LEFTOVER_GRACE) -> list[str]:
        """End everything under this worker but its guard; returns `name (pid N)` of each process ended.

        SIGTERM first, SIGKILL to what still runs after `grace` seconds; the worker's
        own children are reaped. Cheap when nothing is left over.
        """
        first = self.leftovers()
        if not first:
            return []
        ended: dict[int, str] = {}
        termed: set[int] = set()
        start = time.monotonic()
        while True:
            self._reap()
            alive = [p for p in _tree(self.leftovers()) if running(p)]
            if not alive:
                break
            for pid in alive:
                ended.setdefault(pid, _name(pid))
            waited = time.monotonic() - start
            if waited < grace:
                _signal([p for p in alive if p not in termed], signal.SIGTERM)
                termed.update(alive)
            else:
                # what one forked since this look is orphaned by the kill: the next look finds it
                _signal(alive, signal.SIGSTOP)
                _signal(alive, signal.SIGKILL)
                if waited > grace + KILL_WAIT:
                    log.warning("processes %s left by a try did not end when killed", alive)
                    break
            time.sleep(_POLL)
        self._reap()
        return [f"{name} (pid {pid})" for pid, name in ended.items()]

    def _reap(self) -> None:
        for pid in self.leftovers():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _start_guard(read_end: int, group: int) -> int:
    """Start the guard in process group `group`, reading `read_end`; returns its pid."""
    try:
        return os.posix_spawn(
            "/bin/sh",
            ["sh", "-c", _GUARD_SCRIPT],
            {"PATH": "/usr/bin:/bin"},
            setpgroup=group,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, read_end, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
        )
    except (OSError, AttributeError):  # no /bin/sh, or no posix_spawn: the same guard, forked
        guard = os.fork()
        if guard == 0:
            _guard(read_end)
        return guard


def _guard(read_end: int) -> None:
    """The guard, forked where no shell can be spawned: kill the group once the pipe reads end-of-file."""
    try:
        for fd in _open_fds():
            if fd > 2 and fd != read_end:
                _close_quietly(fd)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        while True:
            try:
                if not os.read(read_end, 1):
                    break
            except InterruptedError:
                continue
    finally:
        with contextlib.suppress(OSError):
            os.killpg(0, signal.SIGKILL)
        os._exit(0)


def _open_fds() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return list(range(3, 1024))
