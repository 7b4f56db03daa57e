"""`Variable`: configuration values from the environment or the metadata database."""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from herald.airflow.exceptions import AirflowNotFoundException
from herald.airflow.params import NOTSET
from herald.sdk.masking import is_sensitive, mask_secret

__all__ = ["Variable"]

_ENV_PREFIXES = ("AIRFLOW_VAR_", "HERALD_VAR_")


@functools.lru_cache(maxsize=4)
def _engine(url: str) -> Any:
    from herald.store.db import make_engine

    return make_engine(url, pool_size=1)


def _store() -> tuple[Any, Any]:
    """The variables store module and the metadata database engine (opened on first use)."""
    try:
        import importlib

        store = importlib.import_module("herald.store.variables")
    except ImportError as exc:
        raise RuntimeError(
            "Variables stored in the metadata database need herald.store.variables, which this Herald "
            "does not have; set AIRFLOW_VAR_<KEY> or HERALD_VAR_<KEY> in the environment instead"
        ) from exc
    from herald.config import Settings

    return store, _engine(Settings().db_url)


class Variable:
    """A named configuration value.

    `Variable.get` reads `AIRFLOW_VAR_<KEY>` or `HERALD_VAR_<KEY>` from the environment first
    (as Airflow's environment secrets backend), then the metadata database.
    """

    @staticmethod
    def get(
        key: str,
        default: Any = NOTSET,
        deserialize_json: bool = False,
        *,
        default_var: Any = NOTSET,
    ) -> Any:
        """The value of `key` (parsed as JSON with deserialize_json); `default` when it is not set.

        Raises:
            KeyError: the variable is not defined and no default was given.
        """
        if default is NOTSET:
            default = default_var
        value = Variable._lookup(key)
        if value is not None and is_sensitive(key):
            mask_secret(value)
        if value is None:
            if default is NOTSET:
                raise KeyError(f"Variable {key} does not exist")
            return default
        return json.loads(value) if deserialize_json else value

    @staticmethod
    def _lookup(key: str) -> str | None:
        for prefix in _ENV_PREFIXES:
            value = os.environ.get(prefix + key.upper())
            if value is not None:
                return value
        store, engine = _store()
        with engine.connect() as conn:
            found: str | None = store.get_variable(conn, key)
        return found

    @staticmethod
    def set(key: str, value: Any, description: str | None = None, serialize_json: bool = False) -> None:
        """Store a variable in the metadata database (JSON-encoded with serialize_json)."""
        text = json.dumps(value, indent=2) if serialize_json else str(value)
        store, engine = _store()
        with engine.begin() as conn:
            store.set_variable(conn, key, text, description=description)

    @staticmethod
    def delete(key: str) -> bool:
        """Remove a variable from the metadata database; True when it existed."""
        store, engine = _store()
        with engine.begin() as conn:
            return bool(store.delete_variable(conn, key))

    @staticmethod
    def setdefault(key: str, default: Any, description: str | None = None, deserialize_json: bool = False) -> Any:
        """The variable's value, storing `default` first when it is not set."""
        try:
            return Variable.get(key, deserialize_json=deserialize_json)
        except KeyError:
            Variable.set(key, default, description=description, serialize_json=deserialize_json)
            return default


# Airflow users sometimes catch this when a variable is missing
VariableNotFound = AirflowNotFoundException
