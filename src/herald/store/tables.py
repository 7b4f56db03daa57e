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
    String,
    Table,
    Text,
    UniqueConstraint,
)

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
    Column("name", String(200), nullable=False, unique=True),
    Column("uri", Text, nullable=False),
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
    Column("state", String(20), nullable=False, default="stopped"),
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
    UniqueConstraint("source", "dedupe_key"),
    Index("ix_asset_event_asset_id_id", "asset_id", "id"),
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
    Index("ix_dag_run_state_dag_id", "state", "dag_id"),
    Index("ix_dag_run_dag_id_id", "dag_id", "id"),
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
    # none -> queued -> running -> success | failed | up_for_retry | upstream_failed
    Column("state", String(20), nullable=False),
    Column("try_number", Integer, nullable=False, default=0),
    Column("max_tries", Integer, nullable=False, default=1),
    Column("next_try_at", UtcDateTime()),
    Column("started_at", UtcDateTime()),
    Column("ended_at", UtcDateTime()),
    Column("result", JSON),
    Column("error", Text),
    Column("log", Text),
    Column("hostname", String(250)),
    # The worker queue the try goes to (`@task(queue=...)`), and the last sign of
    # life of the worker running it: a try whose heartbeat stops is failed.
    Column("queue", String(250)),
    Column("heartbeat_at", UtcDateTime()),
    UniqueConstraint("run_pk", "task_id"),
    Index("ix_task_instance_state", "state"),
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
    Column("started_at", UtcDateTime()),
    Column("ended_at", UtcDateTime()),
    Column("hostname", String(250)),
    sqlite_autoincrement=True,
)

dead_letter = Table(
    "dead_letter",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("watcher_id", Id, ForeignKey("watcher.id")),
    Column("source", Text, nullable=False),
    Column("dedupe_key", String(500)),
    Column("body", LargeBinary, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("message", JSON, nullable=False),
    Column("error", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("replayed_at", UtcDateTime()),
    # Set by the API or UI; the triggerer replays the body through its watcher's trigger.
    Column("replay_requested_at", UtcDateTime()),
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
    Index("ix_local_queue_message_queue_id", "queue", "id"),
    sqlite_autoincrement=True,
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
