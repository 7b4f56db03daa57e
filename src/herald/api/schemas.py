"""The API's request and response models: what the OpenAPI document promises."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from herald.store.states import TryEnd

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
    warnings: list[str] = Field([], description="Airflow arguments the DAG sets that Herald accepts without effect.")


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
    logical_date: datetime | None = Field(
        None, description="A cron run's tick, a manual run's trigger time; None for runs made by events."
    )
    data_interval_start: datetime | None = None
    data_interval_end: datetime | None = None
    event_ids: list[int] = Field(description="The events this run consumed.")
    run_key: str | None = Field(None, description="Flow control: the run's key, from its events' payload (`key=`).")
    priority: float = Field(0.0, description="Flow control: the run's priority (`priority=`); higher starts first.")
    held_by: str | None = Field(
        None,
        description="Flow control: the rule holding the queued run, or that skipped or cancelled it: key, "
        "throttle, debounce, rate_limit, max_active_runs, 'cancelled by run RUN_ID' (on_new_event) or "
        "'cancelled by event EVENT_ID' (cancel_on).",
    )
    held_until: datetime | None = Field(None, description="When a debounce or throttle hold ends.")
    cancelled_by_event: int | None = Field(
        None, description="Flow control: the id of the `cancel_on=` asset event that cancelled the run."
    )


class HeldEvent(BaseModel):
    """An event no run yet: a window waits for its partners, or an absence watches its key; or an
    event a `cancel_on=` event cancelled while it waited for a run (no run is made from it)."""

    dag_id: str
    event_id: int
    asset: str | None
    key: str | None = Field(None, description="The event's key (the window's, the absence's or the DAG's `key=`).")
    held_by: str = Field(
        description="'window' (`within()`), 'missing_for' (`missing_for()`) or 'cancelled by event N' (`cancel_on=`)."
    )
    since: datetime = Field(
        description="When the event was queued (a window, a cancel) or the key last seen (an absence)."
    )
    held_until: datetime = Field(
        description="When the window closes without its partners, the silence makes a run (an absence), "
        "or the event was cancelled (`cancel_on=`)."
    )
    detail: str


class Requeue(BaseModel):
    try_number: int
    reason: str = Field(description="Why the try went back to the queue: how its worker was lost.")
    hostname: str | None = None
    requeued_at: datetime | None


class TryRecord(BaseModel):
    """One ended try of a task: how it ended and why."""

    try_number: int = Field(description="0 for a try that ended without running (skipped, upstream failed).")
    state: str = Field(description="The try's state once it ended (`queued` again for a lost worker's try).")
    reason: TryEnd = Field(
        description="Why it ended: success, failed, timed_out, lost_worker, upstream_failed, cancelled, skipped."
    )
    error: str | None = None
    hostname: str | None = Field(None, description="The worker that ran it, if one did.")
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: float | None = None


class WaitingFor(BaseModel):
    """What a deferred try waits for: an event of `asset` matching `match`, a `trigger` a triggerer runs,
    or (neither) until `deadline`."""

    asset: str | None = None
    match: str | None = None
    deadline: datetime | None = Field(None, description="When the wait ends without its event (its timeout).")
    trigger: str | None = Field(
        None,
        description="The trigger written for Airflow the try deferred on (`self.defer(trigger=...)`): its classpath "
        "and kwargs, secrets masked.",
    )
    triggerer: str | None = Field(None, description="The triggerer running that trigger now (none: not taken yet).")
    fired_at: datetime | None = Field(
        None, description="When the trigger fired (or failed); the scheduler's next pass resumes the try."
    )


class TaskInstance(BaseModel):
    task_id: str
    map_index: int = Field(-1, description="Which expansion of a mapped task (0..n-1); -1 for an unmapped task.")
    state: str
    try_number: int
    max_tries: int
    started_at: datetime | None
    ended_at: datetime | None
    result: Any = None
    result_size: int | None = Field(None, description="Bytes of the result as JSON.")
    result_preview: str | None = Field(
        None,
        description="A large result's start, as JSON text (then `result` is null): "
        "GET /runs/{run_id}/tasks/{task_id}/log has it whole.",
    )
    error: str | None = None
    hostname: str | None = None
    requeues: list[Requeue] = Field(
        default_factory=list,
        description="Each time this try went back to the queue because its worker died or went silent "
        "(none of the task's retries used).",
    )
    tries: list[TryRecord] = Field(
        default_factory=list, description="Every ended try of this task (and map index), oldest first, with why."
    )
    waiting_for: WaitingFor | None = Field(None, description="What a deferred try waits for, without a worker.")


class RunRef(BaseModel):
    run_id: str
    dag_id: str
    state: str


class AliasRef(BaseModel):
    name: str
    group: str


class Event(BaseModel):
    id: int
    asset: str
    timestamp: datetime | None
    source: str = Field(description="watcher:ID, task:DAG.TASK, api or cli")
    dedupe_key: str | None = None
    extra: dict[str, Any] = Field(description="`payload` and, for messages, `message`: where it came from.")
    extra_size: int | None = Field(None, description="In listings: bytes of the extra as JSON.")
    extra_preview: str | None = Field(
        None,
        description="In listings, a large extra's start as JSON text (then `extra` is empty): "
        "GET /events/{id} has it whole.",
    )
    source_dag_id: str | None = Field(None, description="The DAG of the task that emitted it (None unless a task did).")
    source_task_id: str | None = Field(None, description="The task that emitted it (None unless a task did).")
    source_run_id: str | None = Field(None, description="The run of that task (None unless a task did).")
    source_map_index: int | None = Field(
        None, description="Its map index, -1 when not mapped (None unless a task did)."
    )
    source_aliases: list[AliasRef] = Field(
        default_factory=list, description="The asset aliases it was emitted through."
    )
    runs: list[RunRef] = Field(description="The runs this event caused.")


class DagCallback(BaseModel):
    kind: str = Field(description="on_success_callback or on_failure_callback.")
    reason: str = Field(description="Why the run ended: success, task_failure or timed_out (Airflow's reasons).")
    state: str = Field(description="pending, running, success, or failed (a callable raised or ran too long).")
    attempts: int
    created_at: datetime | None
    ended_at: datetime | None
    error: str | None = Field(None, description="The traceback of each callable that raised, or why it stopped.")
    log: str | None = Field(None, description="What the callables printed and logged.")


class RunDetail(Run):
    tasks: list[TaskInstance]
    callbacks: list[DagCallback] = Field(
        default_factory=list, description="The DAG's on_success_callback/on_failure_callback of each end of the run."
    )
    events: list[Event] = Field(description="The events that caused this run, each with the runs it caused.")


class TaskLog(BaseModel):
    run_id: str
    task_id: str
    map_index: int = -1
    state: str
    try_number: int
    error: str | None
    log: str = Field(description="The last HERALD_MAX_LOG_BYTES of what the task printed.")
    result: Any = Field(None, description="The task's return value, whole.")


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
    delivery: str = Field(
        "",
        description="What the trigger guarantees: acknowledged after commit and deduplicated, or at most once "
        "(Redis pub/sub, Airflow-style triggers without acknowledgement) and how to get more.",
    )
    state: str
    last_message_at: datetime | None
    last_error: str | None
    received: int
    events: int
    skipped: int
    deduped: int
    dead_lettered: int
    lag: int | None


class Triggerer(BaseModel):
    name: str = Field(description="`triggerer:HOST:PID`, or `standalone`.")
    hostname: str
    pid: int
    alive: bool = Field(description="Its heartbeat is younger than a lease's lifetime.")
    started_at: datetime
    heartbeat_at: datetime
    received: int = Field(description="Messages it delivered since it started.")
    leases: list[str] = Field(description="`asset/watcher` of the watchers whose lease it holds.")
    consuming: list[str] = Field(
        description="`asset/watcher` of every watcher it reads, shareable ones (read by several) included."
    )


class DeadLetter(BaseModel):
    id: int
    watcher_id: int | None
    source: str
    error: str
    body: str = Field(description="The stored body; in listings only its start (`body_preview`).")
    body_encoding: Literal["base64"] | None
    body_size: int = Field(description="Bytes of the message's body as received.")
    body_truncated: bool = Field(
        False,
        description="Only the first HERALD_MAX_DEAD_LETTER_BODY_BYTES were stored; such a dead letter "
        "cannot be replayed.",
    )
    body_preview: bool = Field(False, description="`body` is a listing's preview: GET /dead-letters/{id} for all.")
    headers: dict[str, Any]
    message: dict[str, Any]
    created_at: datetime | None
    replayed_at: datetime | None
    replay_requested_at: datetime | None
    replayed_event_id: int | None = Field(
        None, description="The event the last replay made (None: not replayed, or the trigger now skips it)."
    )
    replay_failed_at: datetime | None = Field(None, description="When a replay failed again; `error` is why.")


class BulkReplay(BaseModel):
    """Which dead letters to replay: those of a watcher and/or whose reason contains a text."""

    watcher_id: int | None = Field(None, ge=1, le=2**63 - 1)
    error: str | None = Field(None, max_length=200)


class BulkReplayed(BaseModel):
    requested: int = Field(description="How many dead letters were asked to be replayed.")


class BulkRetry(BaseModel):
    """Which failed runs to retry: those of a DAG and/or queued since a time."""

    dag_id: str | None = Field(None, max_length=250)
    since: datetime | None = None


class BulkRetried(BaseModel):
    retried: list[RetryResult]


class ReplayRequested(BaseModel):
    watcher_id: int
    requested: int = Field(description="How many dead letters of the watcher were marked for replay.")


class WatcherRef(BaseModel):
    id: int
    asset: str
    name: str


class WatcherPaused(BaseModel):
    id: int
    asset: str
    name: str
    state: str = Field(description="paused, or starting once resumed (a triggerer then reports running).")
    sharing: list[WatcherRef] = Field(
        description="Watchers reading through the same connection: they pause and resume with this one."
    )


# -- variables -------------------------------------------------------------------------------


class Variable(BaseModel):
    key: str
    value: str = Field(description="The value; `***` when the key names a secret, unless `reveal=true`.")
    description: str | None
    updated_at: datetime | None
    masked: bool = Field(description="True when `value` is `***` in place of the stored value.")


class VariableCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=250)
    value: str
    description: str | None = None


class VariableUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: str | None = Field(None, description="The new value; omitted keeps the stored one.")
    description: str | None = Field(None, description="The new description; omitted keeps the stored one.")
