"""The records that travel between the scheduler and the workers, each with one wire form.

A request goes to a worker as a dict (over a pipe, in a Celery message); a
result comes back as a dict (over a pipe, through the `task_result` table).
`to_wire` / `from_wire` are the only places that know those dicts' keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from herald.store.states import TryState
from herald.store.storable import DEPTH_CEILING, SizeLimits, clean_text, json_problem, log_tail, size_problem


def _time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


@dataclass
class TaskRequest:
    """One try of one task instance, with everything the task needs to run.

    Attributes:
        run: the run's `run_id`, `dag_id`, `run_type`, `conf` and `start_date` (ISO).
        events: the asset events that triggered the run (`AssetEvent.to_wire` forms).
        inlet_events: the recent events of the task's inlets (see `herald.sdk.asset_events`).
        upstream: the return value of each succeeded direct upstream task.
        xcom: for every task of the run that succeeded, its pushed values and its
            return value under `return_value`.
        next_method: set when the try resumes an operator that deferred
            (`BaseOperator.defer`): the method to call instead of `execute`, with
            `next_kwargs` (the trigger's `event` among them).
    """

    ti_id: int
    dag_id: str
    task_id: str
    try_number: int
    run: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    upstream: dict[str, Any] = field(default_factory=dict)
    xcom: dict[str, dict[str, Any]] = field(default_factory=dict)
    timeout: float | None = None
    queue: str | None = None
    map_index: int = -1
    inlet_events: dict[str, Any] | None = None
    #: an operator resuming from a deferral: the method it resumes in, and that method's kwargs
    next_method: str | None = None
    next_kwargs: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        """The request as the try runner reads it (JSON-serialisable)."""
        return {
            "ti_id": self.ti_id,
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "try_number": self.try_number,
            "run": self.run,
            "events": self.events,
            "upstream": self.upstream,
            "xcom": self.xcom,
            "timeout": self.timeout,
            "queue": self.queue,
            "map_index": self.map_index,
            "inlet_events": self.inlet_events,
            "next_method": self.next_method,
            "next_kwargs": self.next_kwargs,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> TaskRequest:
        """The request a `to_wire` dict describes."""
        return cls(
            ti_id=int(data["ti_id"]),
            dag_id=data["dag_id"],
            task_id=data["task_id"],
            try_number=int(data["try_number"]),
            run=data["run"],
            events=list(data.get("events") or []),
            upstream=dict(data.get("upstream") or {}),
            xcom=dict(data.get("xcom") or {}),
            timeout=data.get("timeout"),
            queue=data.get("queue"),
            map_index=int(data.get("map_index", -1)),
            inlet_events=data.get("inlet_events"),
            next_method=data.get("next_method"),
            next_kwargs=data.get("next_kwargs"),
        )


@dataclass
class TaskResult:
    """How one try ended.

    Attributes:
        state: `success`, `failed`, or `skipped` (the task skipped itself).
        skip: tasks of the run to mark skipped if they have not started
            (branching, short-circuit), as the task decided.
        xcom: values the task pushed, by key.
        retry: False to fail without using the retries left.
        outlet_extras: the extra of each outlet asset's event, by asset name.
        outlet_alias_events: events added through aliases (`AssetAliasEvent.to_wire` forms).
        try_number: which try this is the result of; a late result of an
            earlier try is ignored.
        lost: True when the try did not end by itself: the process running it died,
            or its worker went silent or stopped. The try goes back to the queue
            without using a retry (up to `HERALD_MAX_LOST_WORKER_REQUEUES` times).
        defer: what a `deferred` try waits for (`herald.sdk.waits.Deferral.to_wire`).
    """

    ti_id: int
    state: TryState
    result: Any = None
    error: str | None = None
    log: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    hostname: str | None = None
    outlet_extras: dict[str, dict[str, Any]] = field(default_factory=dict)
    outlet_alias_events: list[dict[str, Any]] = field(default_factory=list)
    try_number: int | None = None
    skip: list[str] = field(default_factory=list)
    xcom: dict[str, Any] = field(default_factory=dict)
    retry: bool = True
    lost: bool = False
    defer: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.state = TryState(self.state)

    def to_wire(self) -> dict[str, Any]:
        """The result as a dict (the columns of `task_result`)."""
        return {
            "ti_id": self.ti_id,
            "try_number": self.try_number,
            "state": self.state.value,
            "result": self.result,
            "error": self.error,
            "log": self.log,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "hostname": self.hostname,
            "outlet_extras": self.outlet_extras,
            "outlet_alias_events": self.outlet_alias_events,
            "skip": self.skip,
            "xcom": self.xcom,
            "retry": self.retry,
            "lost": self.lost,
            "defer": self.defer,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> TaskResult:
        """The result a try runner (or a `task_result` row) reports, made storable; unknown keys are ignored."""
        retry = data.get("retry")
        made = cls(
            ti_id=int(data["ti_id"]),
            state=TryState(data["state"]),
            result=data.get("result"),
            error=data.get("error"),
            log=data.get("log") or "",
            started_at=_time(data.get("started_at")),
            ended_at=_time(data.get("ended_at")),
            hostname=data.get("hostname"),
            outlet_extras=dict(data.get("outlet_extras") or {}),
            outlet_alias_events=list(data.get("outlet_alias_events") or []),
            try_number=None if data.get("try_number") is None else int(data["try_number"]),
            skip=list(data.get("skip") or []),
            xcom=dict(data.get("xcom") or {}),
            retry=True if retry is None else bool(retry),
            lost=bool(data.get("lost")),
            defer=dict(data["defer"]) if isinstance(data.get("defer"), dict) else None,
        )
        return made.storable()

    def storable(self) -> TaskResult:
        """This result as the database can store it, in place: one task's output never stops a pass.

        Its log and error have NUL and lone surrogates replaced (U+FFFD); a success
        whose return value, pushed XComs or outlet extras cannot be stored as JSON
        (NaN, too deep, not valid Unicode) becomes a failure saying why.
        """
        self.log = clean_text(self.log)
        if self.error is not None:
            self.error = clean_text(self.error)
        if self.state in (TryState.SUCCESS, TryState.SKIPPED):
            problem = (
                json_problem(self.result, DEPTH_CEILING, "the task's return value")
                or json_problem(self.xcom, DEPTH_CEILING, "a value pushed with xcom_push")
                or json_problem(self.outlet_extras, DEPTH_CEILING, "the extra of an outlet event")
                or json_problem(self.skip, DEPTH_CEILING, "the tasks to skip")
            )
            if problem is not None:
                self.state = TryState.FAILED
                self.error = clean_text(f"the task's result cannot be stored: {problem}")
                self.result, self.xcom, self.outlet_extras, self.skip = None, {}, {}, []
        return self

    def capped(self, limits: SizeLimits) -> TaskResult:
        """This result within the size caps, in place: whichever runner sent it, nothing unbounded is stored.

        The log keeps its last `limits.log` bytes; a success whose return value or a
        pushed XCom is larger than `limits.result` bytes as JSON becomes a failure saying so.
        """
        self.log = log_tail(self.log, limits.log)
        if self.state in (TryState.SUCCESS, TryState.SKIPPED):
            problem = size_problem(self.result, limits.result, "the task's return value")
            for key, value in self.xcom.items():
                problem = problem or size_problem(value, limits.result, f"the XCom {key!r}")
            if problem is not None:
                self.state = TryState.FAILED
                self.error = problem
                self.result, self.xcom, self.outlet_extras, self.skip = None, {}, {}, []
        return self


@dataclass
class TaskStarted:
    """A try was handed to a worker."""

    ti_id: int
    started_at: datetime
    hostname: str
