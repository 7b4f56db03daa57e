"""CPU seconds spent by each kind of process while a benchmark level runs (Linux `/proc`).

A benchmark takes a snapshot before and after a level; the difference per kind
divided by the runs started is the CPU each run costs in that kind of process:
the profile that says which process a throughput target waits on.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(c) for c in fh.read().split()]
    except OSError:
        return []


def tree(pid: int) -> list[int]:
    """`pid` and every process under it."""
    found = [pid]
    for child in _children(pid):
        found += tree(child)
    return found


def postgres_backends(database: str) -> list[int]:
    """The PostgreSQL server processes serving `database` (their title names it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                title = fh.read().decode(errors="replace")
        except OSError:
            continue
        if title.startswith("postgres:") and f" {database} " in title:
            found.append(int(entry))
    return found


class CpuShare:
    """Per-kind CPU between `start()` and `stop()`; `kinds` maps a name to a callable giving its pids."""

    def __init__(self, kinds: dict[str, object]) -> None:
        self.kinds = kinds
        self._before: dict[str, dict[int, float]] = {}

    def _snapshot(self) -> dict[str, dict[int, float]]:
        snap: dict[str, dict[int, float]] = {}
        for name, pids in self.kinds.items():
            found: Iterable[int] = pids() if callable(pids) else pids  # type: ignore[assignment]
            snap[name] = {pid: cpu_seconds(pid) for pid in found}
        return snap

    def start(self) -> None:
        self._before = self._snapshot()

    def stop(self) -> dict[str, float]:
        """CPU seconds per kind since `start()` (a process started meanwhile counts from 0)."""
        after = self._snapshot()
        return {
            name: round(sum(cpu - self._before.get(name, {}).get(pid, 0.0) for pid, cpu in now.items()), 2)
            for name, now in after.items()
        }
