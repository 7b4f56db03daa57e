"""The API's request and response models: what the OpenAPI document promises."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a listing. Lists are limit/offset paginated, newest first (DAGs and assets by name).

    `next_offset` is the `offset` of the next page, or null on the last page.
    """

    items: list[T]
    limit: int
    offset: int
    next_offset: int | None


class ErrorBody(BaseModel):
    """Every error: a status, a short code, and a message a person can act on."""

    status: int
    error: str = Field(description="A short code: unauthorized, forbidden, not_found, conflict, invalid_request...")
    message: str
    hint: str | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: str
    version: str


class WhoAmI(BaseModel):
    name: str
    scope: Literal["read", "write"]


# -- DAGs ------------------------------------------------------------------------------------


class TaskNode(BaseModel):
    task_id: str
    upstream: list[str] = []
    retries: int = 0
    retry_delay: float = 0.0
    timeout: float | None = None
    outlets: list[str] = []
    queue: str | None = None


class Batch(BaseModel):
    max_events: int | None
    max_wait: float | None


class RunSummary(BaseModel):
    run_id: str
    state: str
    queued_at: datetime | None
    ended_at: datetime | None


class NextTrigger(BaseModel):
    """What makes the DAG's next run: events of assets, a cron time, or only a manual trigger."""

    kind: Literal["asset", "cron", "manual"]
    text: str = Field(description="The asset expression, the cron string, or 'manual'.")
    next_at: datetime | None = Field(None, description="For cron: when the next run is due.")


class Dag(BaseModel):
    dag_id: str
    fileloc: str
    description: str | None
    schedule: Any
    is_paused: bool
    max_active_runs: int | None
    batch: Batch | None = None
    tasks: list[TaskNode]
    assets: list[str] = Field(description="The assets the schedule mentions.")
    next_trigger: NextTrigger
    last_runs: list[RunSummary] = Field(description="The newest runs, newest first.")


class ImportErrorItem(BaseModel):
    fileloc: str
    error: str
    timestamp: datetime | None


class TriggerRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conf: dict[str, Any] = Field(default_factory=dict, description="Run parameters; tasks see them as `params`.")


# -- runs and tasks --------------------------------------------------------------------------


class Run(BaseModel):
    run_id: str
    dag_id: str
    state: str
    run_type: str
    conf: dict[str, Any]
    queued_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    event_ids: list[int] = Field(description="The events this run consumed.")


class TaskInstance(BaseModel):
    task_id: str
    state: str
    try_number: int
    max_tries: int
    started_at: datetime | None
    ended_at: datetime | None
    result: Any = None
    error: str | None = None
    hostname: str | None = None


class RunRef(BaseModel):
    run_id: str
    dag_id: str
    state: str


class Event(BaseModel):
    id: int
    asset: str
    timestamp: datetime | None
    source: str = Field(description="watcher:ID, task:DAG.TASK, api or cli")
    dedupe_key: str | None = None
    extra: dict[str, Any] = Field(description="`payload` and, for messages, `message`: where it came from.")
    runs: list[RunRef] = Field(description="The runs this event caused.")


class RunDetail(Run):
    tasks: list[TaskInstance]
    events: list[Event] = Field(description="The events that caused this run, each with the runs it caused.")


class TaskLog(BaseModel):
    run_id: str
    task_id: str
    state: str
    try_number: int
    error: str | None
    log: str


class RetryResult(BaseModel):
    run_id: str
    state: str
    retried: list[str] = Field(description="The tasks that will run again.")


# -- assets and events -----------------------------------------------------------------------


class Asset(BaseModel):
    id: int
    name: str
    uri: str
    consumers: list[str] = Field(description="DAGs scheduled on this asset.")


class AssetDetail(Asset):
    watchers: list[str]
    event_count: int
    last_event_at: datetime | None


class EventCount(BaseModel):
    start: datetime
    count: int


class EventCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    extra: dict[str, Any] = Field(
        default_factory=dict, description="The event's extra; tasks read it as `event.extra`."
    )


class ReplayEventRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dag_ids: list[str] | None = Field(
        None, description="The DAGs to run; default: every DAG scheduled on the event's asset."
    )


class ReplayResult(BaseModel):
    event_id: int
    runs: list[RunRef]


# -- watchers and dead letters ---------------------------------------------------------------


class Watcher(BaseModel):
    id: int
    asset: str
    name: str
    url: str | None = Field(description="The trigger's URL, secrets masked.")
    state: str
    last_message_at: datetime | None
    last_error: str | None
    received: int
    events: int
    skipped: int
    deduped: int
    dead_lettered: int
    lag: int | None


class DeadLetter(BaseModel):
    id: int
    watcher_id: int | None
    source: str
    error: str
    body: str
    body_encoding: Literal["base64"] | None
    headers: dict[str, Any]
    message: dict[str, Any]
    created_at: datetime | None
    replayed_at: datetime | None
    replay_requested_at: datetime | None
