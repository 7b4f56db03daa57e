"""Settings: one typed object, read once from the environment and `herald.toml`."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


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
    workers: int = Field(default=0, description="Local worker processes; 0 means one per core, at least 2.")
    max_payload_bytes: int = 1024 * 1024
    api_host: str = "127.0.0.1"
    api_port: int = 8321
    dag_reload_interval: float = 2.0
    max_event_backlog: int = Field(
        default=20_000, ge=1, description="Events waiting for runs beyond which triggerers stop taking messages."
    )
    max_waiting_tries: int = Field(
        default=2_000, ge=1, description="Tries waiting for a worker beyond which schedulers start no new run."
    )

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
    def worker_count(self) -> int:
        """How many local worker processes to pre-start."""
        return self.workers if self.workers > 0 else max(2, os.cpu_count() or 2)


def normalise_database_url(url: str) -> str:
    """Pick the driver for a plain `postgresql://` or `postgres://` URL."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def connection_url(conn_id: str) -> str | None:
    """The URL of connection `conn_id` from `HERALD_CONN_<ID>`, if set."""
    return os.environ.get(f"HERALD_CONN_{conn_id.upper()}")
