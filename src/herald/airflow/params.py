"""`Param`: a run parameter with a default and a JSON schema that `conf` is validated against."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from herald.airflow.exceptions import ParamValidationError


class _NotSet:
    def __repr__(self) -> str:
        return "NOTSET"


NOTSET: Any = _NotSet()


class Param:
    """A DAG parameter: its default and the JSON schema its value must satisfy.

    Args:
        default: the value when the run's conf does not set it (none: the conf must).
        description: shown with the DAG.
        **schema: JSON-schema keywords (`type`, `minimum`, `enum`, `format`, ...).
    """

    def __init__(self, default: Any = NOTSET, description: str | None = None, **schema: Any) -> None:
        self.value = default
        self.description = description
        self.schema = dict(schema)
        if description is not None:
            self.schema.setdefault("description", description)

    def resolve(self, value: Any = NOTSET) -> Any:
        """The value to use (the given one, else the default), validated against the schema."""
        import jsonschema

        if value is NOTSET:
            value = self.value
        if value is NOTSET:
            raise ParamValidationError("no value was given and the param has no default")
        try:
            jsonschema.validate(value, self.schema, format_checker=jsonschema.FormatChecker())
        except jsonschema.ValidationError as exc:
            raise ParamValidationError(exc.message) from None
        return value

    def check_default(self) -> None:
        """Validate the default, when there is one (a bad default is a DAG import error)."""
        if self.value is not NOTSET:
            self.resolve()

    def dump(self) -> dict[str, Any]:
        """The param as JSON: default (None when unset), description and schema."""
        return {
            "value": None if self.value is NOTSET else self.value,
            "description": self.description,
            "schema": self.schema,
        }

    def __repr__(self) -> str:
        return f"Param({self.value!r}, schema={self.schema!r})"


class ParamsDict(Mapping[str, Any]):
    """Run parameters: values, some of them `Param`s; `validate()` returns the plain values."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values = dict(values or {})

    def __getitem__(self, key: str) -> Any:
        value = self._values[key]
        return value.value if isinstance(value, Param) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def get_param(self, key: str) -> Param:
        """The `Param` behind a key (plain values are wrapped)."""
        value = self._values[key]
        return value if isinstance(value, Param) else Param(value)

    def validate(self) -> dict[str, Any]:
        """Every value resolved and checked; raises ParamValidationError naming the param."""
        return resolve_params(self._values, {})


def resolve_params(defaults: Mapping[str, Any], conf: Mapping[str, Any]) -> dict[str, Any]:
    """A run's params: the defaults overridden by `conf`, every `Param` validated."""
    resolved: dict[str, Any] = {}
    for key, default in defaults.items():
        given = conf.get(key, NOTSET)
        if isinstance(default, Param):
            try:
                resolved[key] = default.resolve(given)
            except ParamValidationError as exc:
                raise ParamValidationError(f"param {key!r}: {exc}") from None
        else:
            resolved[key] = default if given is NOTSET else given
    for key, value in conf.items():
        resolved.setdefault(key, value)
    return resolved
