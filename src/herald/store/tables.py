"""Table definitions (SQLAlchemy Core). Alembic migrations are generated from these."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

from herald.store.states import WatcherState
from herald.store.types import UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite wants INTEGER PRIMARY KEY for its rowid alias; PostgreSQL gets BIGINT.
Id = BigInteger().with_variant(Integer(), "sqlite")

dag = Table(
    "dag",
    metadata,
    Column("dag_id", String(250), primary_key=True),
    Column("fileloc", Text, nullable=False),
    Column("description", Text),
    Column("schedule", JSON),
    Column("max_active_runs", Integer),
    Column("batch_max_events", Integer),
    Column("batch_max_wait", Float),
    Column("task_ids", JSON, nullable=False),
    Column("tasks", JSON, nullable=False),
    Column("is_paused", Boolean, nullable=False, default=False),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("next_cron_at", UtcDateTime()),
    Column("updated_at", UtcDateTime(), nullable=False),
    # Airflow's DAG arguments (migration 0006): the scheduler honours the first four
    Column("start_date", UtcDateTime()),
    Column("end_date", UtcDateTime()),
    Column("catchup", Boolean),
    Column("max_active_tasks", Integer),
    Column("dagrun_timeout", Float),
    Column("owner", Text),
    Column("tags", JSON),
    Column("doc_md", Text),
    Column("params", JSON),
    Column("warnings", JSON),
)

import_error = Table(
    "import_error",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("fileloc", Text, nullable=False, unique=True),
    Column("error", Text, nullable=False),
    Column("timestamp", UtcDateTime(), nullable=False),
    sqlite_autoincrement=True,
)

asset = Table(
    "asset",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # Airflow's limit: a name derived from a URI can be long.
    Column("name", String(1500), nullable=False, unique=True),
    Column("uri", Text, nullable=False),
    Column("group", String(1500), nullable=False, server_default="asset"),
    Column("extra", JSON),
    Column("created_at", UtcDateTime(), nullable=False),
    sqlite_autoincrement=True,
)

# Which DAGs are scheduled on which asset (rebuilt at every DAG sync).
dag_schedule_asset = Table(
    "dag_schedule_asset",
    metadata,
    Column("dag_id", String(250), ForeignKey("dag.dag_id", ondelete="CASCADE"), primary_key=True),
    Column("asset_id", Id, ForeignKey("asset.id"), primary_key=True),
)

watcher = Table(
    "watcher",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("asset_id", Id, ForeignKey("asset.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("trigger", JSON, nullable=False),
    Column("consumer_key", Text, nullable=False),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("state", String(20), nullable=False, default=WatcherState.STOPPED.value),
    Column("last_error", Text),
    Column("last_message_at", UtcDateTime()),
    Column("received", BigInteger, nullable=False, default=0),
    Column("events", BigInteger, nullable=False, default=0),
    Column("skipped", BigInteger, nullable=False, default=0),
    Column("deduped", BigInteger, nullable=False, default=0),
    Column("dead_lettered", BigInteger, nullable=False, default=0),
    Column("lag", BigInteger),
    Column("lease_owner", String(200)),
    Column("lease_expires_at", UtcDateTime()),
    Column("updated_at", UtcDateTime(), nullable=False),
    UniqueConstraint("asset_id", "name"),
    sqlite_autoincrement=True,
)

asset_event = Table(
    "asset_event",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("asset_id", Id, ForeignKey("asset.id"), nullable=False),
    # Where the event came from: "watcher:ID", "task:DAG.TASK", "api", "cli".
    Column("source", String(300), nullable=False),
    # The broker's identity of the message (or an Idempotency-Key), unique per source.
    Column("dedupe_key", String(500)),
    Column("extra", JSON, nullable=False),
    Column("timestamp", UtcDateTime(), nullable=False),
    # The task try that emitted it (Airflow's AssetEvent.source_*); NULL for watchers, the API and the CLI.
    Column("source_dag_id", String(250)),
    Column("source_task_id", String(250)),
    Column("source_run_id", String(250)),
    Column("source_map_index", Integer),
    UniqueConstraint("source", "dedupe_key"),
    Index("ix_asset_event_asset_id_id", "asset_id", "id"),
    # a watcher's events over time (the watcher page's chart, migration 0017)
    Index("ix_asset_event_source_timestamp", "source", "timestamp"),
    sqlite_autoincrement=True,
)

# An event waiting for one consumer DAG, until a run consumes it.
event_queue = Table(
    "event_queue",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("dag_id", String(250), nullable=False),
    Column("asset_id", Id, nullable=False),
    Column("event_id", Id, ForeignKey("asset_event.id"), nullable=False),
    Column("queued_at", UtcDateTime(), nullable=False),
    Index("ix_event_queue_dag_id_id", "dag_id", "id"),
    # Retention asks, per old event, whether a DAG still waits for it (migration 0014).
    Index("ix_event_queue_event_id", "event_id"),
    sqlite_autoincrement=True,
)

dag_run = Table(
    "dag_run",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", String(250), nullable=False, unique=True),
    Column("dag_id", String(250), nullable=False),
    Column("state", String(20), nullable=False),
    Column("run_type", String(20), nullable=False),
    Column("conf", JSON, nullable=False),
    Column("queued_at", UtcDateTime(), nullable=False),
    Column("started_at", UtcDateTime()),
    Column("ended_at", UtcDateTime()),
    # Airflow's run dates (migration 0008): a cron run's tick and data interval, a manual
    # run's trigger time; None for runs made by events (Airflow 3's asset-triggered runs).
    Column("logical_date", UtcDateTime()),
    Column("data_interval_start", UtcDateTime()),
    Column("data_interval_end", UtcDateTime()),
    # Flow control (migration 0012, `herald.sdk.flow`): the run's key and priority from its
    # events' payload; the rule holding it queued, or that skipped or cancelled it ("key",
    # "throttle", "debounce", "rate_limit", "max_active_runs", "cancelled by run X"); and when
    # a debounce or throttle hold ends.
    Column("run_key", String(250)),
    Column("priority", Float, nullable=False, default=0.0, server_default="0"),
    Column("held_by", String(300)),
    Column("held_until", UtcDateTime()),
    # the asset event that cancelled the run (`cancel_on=`, migration 0019)
    Column("cancelled_by_event", Id),
    # Every state change is a new row version with an entry in each index below (`state`
    # is indexed: no update is HOT), so dag_run keeps few, and flow control's hold only
    # the runs with a key or a hold (migration 0029).
    # a pass starts the oldest queued runs: `state = 'queued' ORDER BY id` (migration 0028);
    # also a state's runs (timeouts, the running runs of some DAGs)
    Index("ix_dag_run_state_id", "state", "id"),
    Index("ix_dag_run_dag_id_id", "dag_id", "id"),
    # a DAG's runs over time (the DAG page's chart, migration 0017)
    Index("ix_dag_run_dag_id_queued_at", "dag_id", "queued_at"),
    # a key's runs by state (admission); a key's latest starts (throttle); see also below
    Index(
        "ix_dag_run_dag_id_run_key_state_id",
        "dag_id",
        "run_key",
        "state",
        "id",
        postgresql_where=text("run_key IS NOT NULL"),
        sqlite_where=text("run_key IS NOT NULL"),
    ),
    Index(
        "ix_dag_run_dag_id_run_key_started_at",
        "dag_id",
        "run_key",
        "started_at",
        postgresql_where=text("run_key IS NOT NULL"),
        sqlite_where=text("run_key IS NOT NULL"),
    ),
    # the debounce and throttle holds that end (admission's release, migration 0019)
    Index(
        "ix_dag_run_dag_id_held_until",
        "dag_id",
        "held_until",
        postgresql_where=text("held_until IS NOT NULL"),
        sqlite_where=text("held_until IS NOT NULL"),
    ),
    sqlite_autoincrement=True,
)

# A DAG's queued runs in start order (highest priority first, then oldest), read without a sort.
Index(
    "ix_dag_run_dag_id_state_priority_id",
    dag_run.c.dag_id,
    dag_run.c.state,
    dag_run.c.priority.desc(),
    dag_run.c.id,
)

# Keys of a DAG with flow rules whose queued runs may start now where they could not
# before (a run of the key ended, a new run of it came): admission reads only these
# (migration 0019). `touched` is bumped by every mark, so that a mark locks the row and
# an admission deleting it waits for the mark's transaction (see `store.flow.take_dirty`).
flow_dirty_key = Table(
    "flow_dirty_key",
    metadata,
    Column("dag_id", String(250), nullable=False),
    Column("run_key", String(250), nullable=False),
    Column("touched", Integer, nullable=False, default=0, server_default="0"),
    PrimaryKeyConstraint("dag_id", "run_key"),
)

# Events a `cancel_on=` event consumed before any run took them (migration 0027): events of
# its key still queued for the DAG (gathered by an `EventBatch`, waiting on an asset
# condition) leave the queue here instead of making a run; listed with the held events.
cancelled_event = Table(
    "cancelled_event",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("dag_id", String(250), nullable=False),
    Column("event_id", Id, ForeignKey("asset_event.id", ondelete="CASCADE"), nullable=False),
    Column("run_key", String(250)),
    Column("queued_at", UtcDateTime(), nullable=False),
    Column("cancelled_by_event", Id, nullable=False),
    Column("cancelled_at", UtcDateTime(), nullable=False),
    Index("ix_cancelled_event_dag_id_id", "dag_id", "id"),
    # an event's record goes with it (retention; ON DELETE CASCADE)
    Index("ix_cancelled_event_event_id", "event_id"),
    sqlite_autoincrement=True,
)

dag_run_event = Table(
    "dag_run_event",
    metadata,
    Column("run_pk", Id, ForeignKey("dag_run.id", ondelete="CASCADE"), primary_key=True),
    Column("event_id", Id, ForeignKey("asset_event.id"), primary_key=True),
    Index("ix_dag_run_event_event_id", "event_id"),
)

task_instance = Table(
    "task_instance",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_pk", Id, ForeignKey("dag_run.id", ondelete="CASCADE"), nullable=False),
    Column("dag_id", String(250), nullable=False),
    Column("task_id", String(250), nullable=False),
    # Which expansion of a mapped task this is (0..n-1), -1 for an unmapped task (migration 0008).
    Column("map_index", Integer, nullable=False, default=-1, server_default="-1"),
    # A `herald.store.states.TryState`; the allowed moves are listed there.
    Column("state", String(20), nullable=False),
    Column("try_number", Integer, nullable=False, default=0),
    Column("max_tries", Integer, nullable=False, default=1),
    Column("next_try_at", UtcDateTime()),
    Column("started_at", UtcDateTime()),
    Column("ended_at", UtcDateTime()),
    Column("result", JSON),
    # Values the task pushed (XCom), by key; its return value is `result`.
    Column("xcom", JSON),
    Column("error", Text),
    Column("log", Text),
    Column("hostname", String(250)),
    # The worker queue the try goes to (`@task(queue=...)`), and the last sign of
    # life of the worker running it: a try whose heartbeat stops is failed.
    Column("queue", String(250)),
    Column("heartbeat_at", UtcDateTime()),
    # An operator that deferred with `self.defer(trigger=..., method_name=...)` resumes in
    # that method with these arguments (the trigger's event among them), under the same
    # try number, as Airflow's `next_method` / `next_kwargs` (migration 0022).
    Column("next_method", String(250)),
    Column("next_kwargs", JSON),
    UniqueConstraint("run_pk", "task_id", "map_index"),
    # claims read the oldest queued tries in order: `state = 'queued' ORDER BY id` (migration 0028)
    Index("ix_task_instance_state_id", "state", "id"),
    sqlite_autoincrement=True,
)

# How a try ended, written by a worker process of its own (`herald worker`) and
# applied by whichever scheduler claims it (retries, downstream tasks, outlets).
task_result = Table(
    "task_result",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ti_id", Id, nullable=False),
    Column("try_number", Integer),
    Column("state", String(20), nullable=False),
    Column("result", JSON),
    Column("error", Text),
    Column("log", Text),
    Column("outlet_extras", JSON),
    # Events the try added through asset aliases (`outlet_events[alias].add(...)`, migration 0009).
    Column("outlet_alias_events", JSON),
    Column("started_at", UtcDateTime()),
    Column("ended_at", UtcDateTime()),
    Column("hostname", String(250)),
    # Tasks the try asked to skip, values it pushed, and False to fail without retrying.
    Column("skip", JSON),
    Column("xcom", JSON),
    Column("retry", Boolean),
    # What a deferred try waits for (`herald.sdk.waits.Deferral.to_wire`, migration 0013).
    Column("defer", JSON),
    # True when the try did not end by itself: its worker died or went silent (migration 0014).
    Column("lost", Boolean),
    sqlite_autoincrement=True,
)

# Each time a try went back to the queue because its worker was lost (died, went silent),
# without using the task's retries (migration 0014): the try's history of lost workers.
task_requeue = Table(
    "task_requeue",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ti_id", Id, ForeignKey("task_instance.id", ondelete="CASCADE"), nullable=False),
    Column("try_number", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("hostname", String(250)),
    Column("requeued_at", UtcDateTime(), nullable=False),
    Index("ix_task_requeue_ti_id_try_number", "ti_id", "try_number"),
    sqlite_autoincrement=True,
)

# Every finished try of a task (migration 0018): one row per try that ended, however
# (`herald.store.states.TryEnd`), written by the store in the transaction that ended it.
# `task_instance` keeps only a task's current try; this keeps the ones before it.
task_try = Table(
    "task_try",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_pk", Id, ForeignKey("dag_run.id", ondelete="CASCADE"), nullable=False),
    Column("task_id", String(250), nullable=False),
    Column("map_index", Integer, nullable=False),
    Column("try_number", Integer, nullable=False),
    # the try's state once it ended (`up_for_retry`, `failed`, ...; `queued` for a lost worker's)
    Column("state", String(20), nullable=False),
    Column("reason", String(20), nullable=False),
    Column("error", Text),
    Column("hostname", String(250)),
    Column("started_at", UtcDateTime()),
    Column("ended_at", UtcDateTime()),
    Index("ix_task_try_run_pk_id", "run_pk", "id"),
    sqlite_autoincrement=True,
)

dead_letter = Table(
    "dead_letter",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("watcher_id", Id, ForeignKey("watcher.id")),
    Column("source", Text, nullable=False),
    Column("dedupe_key", String(500)),
    # The first HERALD_MAX_DEAD_LETTER_BODY_BYTES of the message's body; `body_size` is the
    # original size (NULL in rows older than the cap, whose body is whole).
    Column("body", LargeBinary, nullable=False),
    Column("body_size", BigInteger),
    Column("body_truncated", Boolean, nullable=False, default=False, server_default=false()),
    Column("headers", JSON, nullable=False),
    Column("message", JSON, nullable=False),
    Column("error", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("replayed_at", UtcDateTime()),
    # Set by the API or UI; the triggerer replays the body through its watcher's trigger.
    Column("replay_requested_at", UtcDateTime()),
    # What the last replay made (migration 0017): the event it became, or when it failed
    # again (then `error` is the new reason).
    Column("replayed_event_id", Id),
    Column("replay_failed_at", UtcDateTime()),
    # A poison message redelivered after a crash is one dead letter, not two.
    UniqueConstraint("watcher_id", "dedupe_key"),
    sqlite_autoincrement=True,
)

local_queue_message = Table(
    "local_queue_message",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("queue", String(250), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    # Chosen by the publisher (migration 0020): a publish sent again after its reply was
    # lost inserts nothing new, and its message's dedupe key is this key, not the row id.
    Column("publish_key", String(64)),
    Index("ix_local_queue_message_queue_id", "queue", "id"),
    Index("ux_local_queue_message_publish_key", "publish_key", unique=True),
    sqlite_autoincrement=True,
)

#: How far the running Herald has moved each publish inbox (`store.inbox`) into
#: local_queue_message: the move and this mark commit in one transaction, so a move
#: that a crash interrupts is made again from the mark, never twice (migration 0025).
local_queue_inbox = Table(
    "local_queue_inbox",
    metadata,
    # the inbox file's identity (made when the file was created), not its path
    Column("inbox", String(64), primary_key=True),
    Column("moved_up_to", BigInteger, nullable=False),
)

api_token = Table(
    "api_token",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("token_hash", String(128), nullable=False, unique=True),
    Column("scope", String(20), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    sqlite_autoincrement=True,
)

# Airflow's Variables: key/value pairs a DAG reads with `Variable.get`, managed with
# `herald variables` and /api/v1/variables. `is_encrypted` is kept for a later Fernet
# key; values are plain text for now.
variable = Table(
    "variable",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(250), nullable=False, unique=True),
    Column("val", Text, nullable=False),
    Column("description", Text),
    Column("is_encrypted", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    sqlite_autoincrement=True,
)

# Where a watcher has read a stream that has no acknowledgement (Kinesis): one row per
# watcher and position key (a shard), written in the transaction that stores the
# events, so a restarted triggerer reads on from exactly what was committed.
stream_checkpoint = Table(
    "stream_checkpoint",
    metadata,
    Column("watcher_id", Id, ForeignKey("watcher.id", ondelete="CASCADE"), nullable=False),
    Column("position_key", String(250), nullable=False),
    # Kinesis sequence numbers are decimal strings of up to 128 digits.
    Column("position", String(250), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("watcher_id", "position_key"),
)

# -- asset aliases (migration 0009) ------------------------------------------------------------

# `AssetAlias(name)`: a name tasks emit asset events through (`outlet_events[alias].add(Asset(...))`).
asset_alias = Table(
    "asset_alias",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(1500), nullable=False, unique=True),
    Column("group", String(1500), nullable=False, server_default=""),
    sqlite_autoincrement=True,
)

# The assets an alias resolved to: every asset an event was ever emitted for through it.
# A DAG scheduled on the alias is scheduled on these assets, as in Airflow.
asset_alias_asset = Table(
    "asset_alias_asset",
    metadata,
    Column("alias_id", Id, ForeignKey("asset_alias.id", ondelete="CASCADE"), primary_key=True),
    Column("asset_id", Id, ForeignKey("asset.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_asset_alias_asset_asset_id", "asset_id"),
)

# Which aliases each event was emitted through (`AssetEvent.source_aliases`).
asset_alias_event = Table(
    "asset_alias_event",
    metadata,
    Column("alias_id", Id, ForeignKey("asset_alias.id", ondelete="CASCADE"), primary_key=True),
    Column("event_id", Id, ForeignKey("asset_event.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_asset_alias_event_event_id", "event_id"),
)

# Which DAGs are scheduled on which alias (rebuilt at every DAG sync, as dag_schedule_asset).
dag_schedule_alias = Table(
    "dag_schedule_alias",
    metadata,
    Column("dag_id", String(250), ForeignKey("dag.dag_id", ondelete="CASCADE"), primary_key=True),
    Column("alias_id", Id, ForeignKey("asset_alias.id", ondelete="CASCADE"), primary_key=True),
)

# Every running triggerer, written by its lease round (`store.triggerers`): how many
# are alive decides each one's fair share of the watchers' leases; `consuming` lists
# the watchers it reads now (its leased ones and the shared ones every triggerer reads).
triggerer = Table(
    "triggerer",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("heartbeat_at", UtcDateTime(), nullable=False),
    Column("consuming", JSON, nullable=False),
    # messages it delivered since it started (what it did of a shared consumer's work)
    Column("received", BigInteger, nullable=False, server_default="0"),
)

# A DAG's on_success_callback / on_failure_callback to run for one run end (migration 0016),
# inserted in the transaction that ends the run; run by a scheduler's callback runner in a
# child process, which records how it went.
dag_callback = Table(
    "dag_callback",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_pk", Id, ForeignKey("dag_run.id", ondelete="CASCADE"), nullable=False),
    Column("dag_id", String(250), nullable=False),
    # "on_success_callback" or "on_failure_callback"
    Column("kind", String(40), nullable=False),
    # Airflow's reason: "success", "task_failure", "timed_out"
    Column("reason", String(40), nullable=False),
    # A `herald.store.states.CallbackState`
    Column("state", String(20), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("claimed_by", String(200)),
    Column("claimed_at", UtcDateTime()),
    Column("ended_at", UtcDateTime()),
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("log", Text),
    Column("error", Text),
    Index("ix_dag_callback_state_id", "state", "id"),
    Index("ix_dag_callback_run_pk", "run_pk"),
    sqlite_autoincrement=True,
)

# Alerts sent to the webhook and by e-mail (migration 0016): one row per episode of one
# condition ("watcher:3:down", "dag:etl:failing"). The unique (key, episode) lets only one
# scheduler open an episode; guarded UPDATEs let only one fire it and one resolve it.
alert = Table(
    "alert",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(500), nullable=False),
    Column("episode", Integer, nullable=False),
    # A `herald.store.states.AlertState`
    Column("state", String(20), nullable=False),
    Column("summary", Text, nullable=False),
    Column("detail", JSON),
    Column("since", UtcDateTime(), nullable=False),
    Column("fired_at", UtcDateTime()),
    Column("resolved_at", UtcDateTime()),
    UniqueConstraint("key", "episode"),
    Index("ix_alert_state", "state"),
    sqlite_autoincrement=True,
)

# -- waiting inside a run, windows and absence (migration 0013) ---------------------------------

# What a `deferred` try waits for: an event of `asset_id` whose payload `match` (a JMESPath
# expression, rendered with the run's context) holds, or only a time. At `deadline` the
# wait ends: failed (its timeout) or, for a time wait (`asset_id` NULL), succeeded.
# Events after `since_event_id` count; once `caught_up`, the wait is matched only against
# events past its asset's cursor (`task_wait_cursor`). `match_path` / `match_value` are the
# `path == literal` the expression requires (the value as `herald.sdk.waits.lookup_key`):
# an event finds the waits it may end by this index, not by evaluating every expression.
task_wait = Table(
    "task_wait",
    metadata,
    Column("ti_id", Id, ForeignKey("task_instance.id", ondelete="CASCADE"), primary_key=True),
    Column("asset_id", Id, ForeignKey("asset.id", ondelete="CASCADE")),
    Column("match", Text),
    Column("match_path", String(500)),
    Column("match_value", String(64)),
    Column("deadline", UtcDateTime()),
    Column("since_event_id", BigInteger, nullable=False, default=0),
    Column("caught_up", Boolean, nullable=False, default=False),
    # what the try shows when its deadline passes (the timeout's reason), and whether it skips then
    Column("timeout_reason", Text),
    Column("soft_fail", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime(), nullable=False),
    # A trigger written for Airflow (migration 0026): rebuilt by a triggerer from its classpath and
    # kwargs (JSON), run by the one holding its lease (free once `lease_expires_at` passed; NULL
    # for the other waits and once fired). The first triggerer to store how it ended (`fired`: its
    # event, or its failure) ends it for the scheduler's next pass; `trigger_token` names this
    # deferral, so a run of an earlier deferral of the same try never ends a later one.
    Column("trigger_classpath", String(500)),
    Column("trigger_kwargs", JSON),
    Column("trigger_token", String(32)),
    Column("lease_owner", String(200)),
    Column("lease_expires_at", UtcDateTime()),
    Column("fired", JSON),
    Column("fired_at", UtcDateTime()),
    Index("ix_task_wait_asset_id_match_path_match_value", "asset_id", "match_path", "match_value"),
    Index("ix_task_wait_asset_id_caught_up", "asset_id", "caught_up"),
    Index("ix_task_wait_deadline", "deadline"),
    Index("ix_task_wait_lease_expires_at", "lease_expires_at"),
    Index("ix_task_wait_lease_owner", "lease_owner"),
    Index("ix_task_wait_fired_at", "fired_at"),
)

# How far the events of each awaited asset have been matched against its caught-up waits.
task_wait_cursor = Table(
    "task_wait_cursor",
    metadata,
    Column("asset_id", Id, ForeignKey("asset.id", ondelete="CASCADE"), primary_key=True),
    Column("checked_through", BigInteger, nullable=False),
)

# The keys an absence condition (`a.missing_for(seconds, key=...)`) has seen, per DAG: when
# each last sent an event, and whether its current silence has made its run already.
asset_key_seen = Table(
    "asset_key_seen",
    metadata,
    Column("dag_id", String(250), ForeignKey("dag.dag_id", ondelete="CASCADE"), nullable=False),
    Column("key", String(500), nullable=False),
    Column("last_seen", UtcDateTime(), nullable=False),
    Column("last_event_id", BigInteger, nullable=False),
    Column("alerted", Boolean, nullable=False, default=False),
    PrimaryKeyConstraint("dag_id", "key"),
    Index("ix_asset_key_seen_alerted_last_seen", "alerted", "last_seen"),
)

# A watcher's health over time (migration 0018): sampled every few seconds by the triggerer
# holding its lease, kept for a day (and no longer than HERALD_RETENTION).
watcher_sample = Table(
    "watcher_sample",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("watcher_id", Id, ForeignKey("watcher.id", ondelete="CASCADE"), nullable=False),
    Column("sampled_at", UtcDateTime(), nullable=False),
    Column("state", String(20), nullable=False),
    Column("lag", BigInteger),
    Column("received", BigInteger, nullable=False),
    Column("error", Text),
    Index("ix_watcher_sample_watcher_id_sampled_at", "watcher_id", "sampled_at"),
    Index("ix_watcher_sample_sampled_at", "sampled_at"),
    sqlite_autoincrement=True,
)
