"""Settings: one typed object, read once from the environment and `herald.toml`."""

from __future__ import annotations

import os
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from herald.durations import parse_duration
from herald.store.storable import SizeLimits


class _TomlSource(PydanticBaseSettingsSource):
    """`herald.toml` in `$HERALD_HOME` or the working directory: the same keys, lower case."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        home = Path(os.environ.get("HERALD_HOME", ".herald"))
        for candidate in (home / "herald.toml", Path("herald.toml")):
            if candidate.is_file():
                with candidate.open("rb") as fh:
                    data = tomllib.load(fh)
                return {k.lower(): v for k, v in data.get("herald", data).items()}
        return {}


class Settings(BaseSettings):
    """Herald's configuration. Every field is `HERALD_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="HERALD_", extra="ignore")

    home: Path = Field(default=Path(".herald"), description="Where the SQLite database and logs live.")
    dags_folder: Path | None = Field(default=None, description="Folder of DAG files; default $HERALD_HOME/dags.")
    database_url: str | None = Field(default=None, description="Default: sqlite at $HERALD_HOME/herald.db.")
    executor: Literal["local", "celery"] = "local"
    celery_broker_url: str | None = None
    celery_queue_prefix: str = Field(
        default="", description="Put before every Celery queue name: installations sharing a broker stay apart."
    )
    celery_visibility_timeout: float = Field(
        default=300.0, gt=0, description="Redis: an unacknowledged message (its worker died) comes back after this."
    )
    celery_resend_after: float = Field(
        default=60.0, gt=0, description="A try still queued this long with an empty Celery queue is published again."
    )
    celery_batch_size: int = Field(
        default=32,
        ge=1,
        le=256,
        description="Tries sent in one Celery message at most: the pool process that receives it claims them in "
        "one statement, runs them one after the other and writes their results together; those not started "
        "a second after it began are handed on (queued and published again, one message each). A scheduler "
        "pass's tries of one queue are spread evenly over as few messages as this allows; 1 sends one message "
        "per try. A try with a timeout always travels alone (Celery's time limits are per message).",
    )
    celery_prefetch_multiplier: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Celery messages a worker takes from the broker per pool process (Celery's "
        "worker_prefetch_multiplier; acknowledged after their tries, the running ones count): 1 takes a "
        "message only for a free process, more reserve messages ahead, whose tries wait on that worker.",
    )
    heartbeat_timeout: float = Field(
        default=30.0,
        gt=0,
        description="A running try whose worker has been silent this long is lost: it goes back to the queue "
        "(see max_lost_worker_requeues). Workers beat every quarter of it, at most every 5 seconds.",
    )
    max_lost_worker_requeues: int = Field(
        default=3,
        ge=0,
        description="Times a try whose worker died or went silent (not a task that raised or timed out) goes "
        "back to the queue without using the task's retries; one more loss fails it with the reason.",
    )
    workers: int = Field(default=0, description="Local worker processes; 0 means one per core, at least 2.")
    worker_prefetch: int = Field(
        default=8,
        ge=0,
        le=64,
        description="`herald worker`: tries claimed ahead per pool process, so that a process starts its next "
        "try without waiting for a claim and each claim takes a batch; 0 claims only for idle processes "
        "(fairest for long tasks).",
    )
    max_payload_bytes: int = 1024 * 1024
    log_level: str = Field(default="WARNING", description="Level of Herald's process logs (DEBUG, INFO, WARNING...).")
    api_host: str = "127.0.0.1"
    api_port: int = 8321
    dag_reload_interval: float = 2.0
    max_event_backlog: int = Field(
        default=20_000, ge=1, description="Events waiting for runs beyond which triggerers stop taking messages."
    )
    max_waiting_tries: int = Field(
        default=2_000, ge=1, description="Tries waiting for a worker beyond which schedulers start no new run."
    )
    max_payload_depth: int = Field(
        default=64,
        ge=1,
        le=200,
        description="Payloads (messages, webhook events) and task results nested deeper than this many "
        "levels are refused: a message becomes a dead letter, a task fails. At most 200 (deeper values "
        "cannot be handed to workers or shown by the API).",
    )
    apply_function_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a trigger's apply_function may take for one message; past it the message "
        "becomes a dead letter and the watcher carries on.",
    )
    max_dead_letter_body_bytes: int = Field(
        default=256 * 1024,
        ge=1,
        description="A dead letter keeps the first this many bytes of its message's body (with the original "
        "size and a truncated flag); a truncated one cannot be replayed.",
    )
    max_log_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="A task's log keeps its last this many bytes (a first line says how much was dropped); "
        "the worker never holds more than about twice this in memory.",
    )
    max_result_bytes: int = Field(
        default=1024 * 1024,
        ge=1,
        description="A task whose return value (or a value pushed with xcom_push) is larger than this as JSON "
        "fails saying so.",
    )
    max_request_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="The API answers 413 to a request whose body is larger, before reading it into memory.",
    )
    dag_file_processor_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a DAG file may take to import in the separate process that checks it before "
        "Herald imports it (Airflow's dag_file_processor_timeout); past it the file is an import error.",
    )
    dag_parsing_processes: int = Field(
        default=2,
        ge=1,
        description="DAG files checked at once, each in its own process (Airflow's parsing_processes).",
    )
    inlet_events_limit: int = Field(
        default=100, ge=1, description="Latest events of each inlet a task gets in inlet_events[asset]."
    )
    try_process_groups: bool = Field(
        default=True,
        description="End what a try starts with the try: each worker leads a process group of its own and "
        "ends what a try left running (`sleep &` in bash, subprocesses, daemons) when the try ends, and the "
        "group when the worker is killed (timeouts, cancelled runs, a SIGKILL of Herald). Turn off only to "
        "let tasks start processes meant to outlive them.",
    )
    max_map_length: int = Field(
        default=1024,
        ge=1,
        description="Most map indexes a mapped task (.expand()) may get, as Airflow's [core] max_map_length.",
    )

    dag_callback_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a DAG's on_success_callback/on_failure_callback may take (all of one run end's "
        "callables together, in a child process of the scheduler); past it they are killed and recorded as failed.",
    )

    alert_webhook_url: str | None = Field(
        default=None, description="Alerts are POSTed here as JSON (firing and resolved); none when unset."
    )
    alert_smtp_host: str | None = Field(default=None, description="Alerts are e-mailed through this SMTP server.")
    alert_smtp_port: int = Field(default=25, ge=1, le=65535, description="The SMTP server's port.")
    alert_smtp_from: str = Field(default="herald@localhost", description="The From address of alert e-mails.")
    alert_smtp_to: str = Field(default="", description="Who gets alert e-mails: addresses separated by commas.")
    alert_smtp_user: str | None = Field(default=None, description="SMTP login, if the server wants one.")
    alert_smtp_password: str | None = Field(default=None, description="SMTP password (with HERALD_ALERT_SMTP_USER).")
    alert_smtp_starttls: bool = Field(default=False, description="Upgrade the SMTP connection with STARTTLS.")
    alert_send_timeout: float = Field(
        default=10.0, gt=0, description="Seconds one webhook POST or one SMTP conversation may take."
    )
    alert_interval: float = Field(default=15.0, gt=0, description="Seconds between two looks at the alert conditions.")
    alert_watcher_after: float = Field(
        default=60.0,
        ge=0,
        description="A watcher that is not running (stopped, failed, reconnecting, or its triggerer gone), or "
        "lags, for this many seconds raises an alert.",
    )
    alert_watcher_lag: int | None = Field(
        default=10_000, ge=0, description="A watcher whose lag (messages behind) is above this raises an alert."
    )
    alert_latency_seconds: float | None = Field(
        default=None,
        gt=0,
        description="A DAG whose event-to-task latency (event to its run's first task start, 95th percentile "
        "over HERALD_ALERT_LATENCY_WINDOW) is above this raises an alert; off when unset.",
    )
    alert_latency_window: float = Field(
        default=300.0, gt=0, description="Seconds of recent runs the latency alert looks at."
    )
    alert_dag_failures: bool = Field(
        default=True, description="A DAG whose latest run failed raises an alert, resolved when a run succeeds."
    )

    @field_validator(
        "alert_watcher_lag", "alert_latency_seconds", "alert_webhook_url", "alert_smtp_host", mode="before"
    )
    @classmethod
    def _off(cls, value: Any) -> Any:
        # HERALD_ALERT_WATCHER_LAG=off (or empty) turns that alert off
        if isinstance(value, str) and value.strip().lower() in ("", "off", "none"):
            return None
        return value

    @property
    def alert_recipients(self) -> list[str]:
        """The addresses of HERALD_ALERT_SMTP_TO."""
        return [a.strip() for a in self.alert_smtp_to.split(",") if a.strip()]

    @property
    def alerts_enabled(self) -> bool:
        """Whether alerts have somewhere to go (a webhook, or an SMTP server and recipients)."""
        return bool(self.alert_webhook_url) or bool(self.alert_smtp_host and self.alert_recipients)

    retention: timedelta | None = Field(
        default=None,
        description="Keep this long (7d, 12h, 30m): older finished runs with their tries and logs, events no "
        "run or waiting DAG needs, and replayed dead letters are deleted on a schedule by the scheduler "
        "(and standalone), as `herald db clean --older-than` does. Off by default.",
    )
    retention_interval: float = Field(
        default=3600.0, gt=0, description="Seconds between two scheduled cleans (HERALD_RETENTION)."
    )
    retention_batch_size: int = Field(
        default=1000,
        ge=1,
        description="Rows deleted per transaction by a clean: short enough never to hold the scheduler up.",
    )
    triggerer_capacity: int = Field(
        default=1000,
        ge=1,
        description="The most triggers of deferred tries (Airflow-style triggers of `self.defer(...)`) one "
        "triggerer runs at once (Airflow's default_capacity); beyond them they wait for another triggerer.",
    )
    watcher_sample_interval: float = Field(
        default=15.0,
        gt=0,
        description="Seconds between two samples of each watcher's state, lag, received count and error (the "
        "watcher page's lag chart and error history), taken by the triggerer holding its lease; kept a day.",
    )

    @field_validator("retention", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("", "off", "none", "0"):
            return None
        if isinstance(value, str):
            return parse_duration(value)
        return value

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    @property
    def dags_path(self) -> Path:
        """The DAGs folder, resolved."""
        return (self.dags_folder or self.home / "dags").expanduser().resolve()

    @property
    def db_url(self) -> str:
        """The SQLAlchemy URL of the metadata database, with Herald's driver chosen."""
        if not self.database_url:
            return f"sqlite:///{self.home / 'herald.db'}"
        return normalise_database_url(self.database_url)

    @property
    def limits(self) -> SizeLimits:
        """The size caps, for the processes that enforce them."""
        return SizeLimits(
            dead_letter_body=self.max_dead_letter_body_bytes,
            log=self.max_log_bytes,
            result=self.max_result_bytes,
            request=self.max_request_bytes,
            payload=self.max_payload_bytes,
        )

    @property
    def worker_count(self) -> int:
        """How many local worker processes to pre-start."""
        return self.workers if self.workers > 0 else max(2, os.cpu_count() or 2)


def normalise_database_url(url: str) -> str:
    """Pick the driver for a plain `postgresql://` or `postgres://` URL."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
