"""What the scheduler hands an executor, and what comes back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass
class TaskRequest:
    """One try of one task instance, with everything the task needs to run."""

    ti_id: int
    dag_id: str
    task_id: str
    try_number: int
    run: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    upstream: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    queue: str | None = None


@dataclass
class TaskResult:
    """How one try ended."""

    ti_id: int
    state: str  # "success" or "failed"
    result: Any = None
    error: str | None = None
    log: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    hostname: str | None = None
    outlet_extras: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: which try this is the result of: a late result of an earlier try is ignored
    try_number: int | None = None


@dataclass
class TaskStarted:
    """A try was handed to a worker."""

    ti_id: int
    started_at: datetime
    hostname: str


class Executor(Protocol):
    """Runs task tries and reports their start and end."""

    def start(self, on_started: Callable[[TaskStarted], None], on_result: Callable[[TaskResult], None]) -> None:
        """Start the workers; the callbacks run on the event loop."""
        ...

    def submit(self, requests: list[TaskRequest]) -> None:
        """Queue tries to run."""
        ...

    def queued(self) -> int:
        """Tries waiting for a free worker."""
        ...

    def reload(self) -> None:
        """Let workers pick up changed DAG files (between tasks)."""
        ...

    async def stop(self, grace: float) -> None:
        """Stop the workers, giving running tasks `grace` seconds to finish."""
        ...
