"""Airflow's SQS message filtering: `literal`, `jsonpath` and `jsonpath-ext` matches on a message body."""

from __future__ import annotations

import json
from typing import Any

MODES = ("literal", "jsonpath", "jsonpath-ext")


class MessageFilter:
    """Keeps the messages whose body matches, as Airflow's `message_filtering` does.

    Args:
        mode: `literal` (the body equals one of `match_values`), `jsonpath` or
            `jsonpath-ext` (the JSONPath expression `config`, evaluated on the
            body parsed as JSON, finds something, and, when `match_values` is
            given, one of the values it finds is among them).
        match_values: the values to match.
        config: the JSONPath expression (`jsonpath` modes only).

    The expression is compiled here, so that a bad one is an error when the
    DAG file loads.
    """

    def __init__(self, mode: str, match_values: Any = None, config: Any = None) -> None:
        if mode not in MODES:
            raise ValueError(f"message_filtering must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.match_values = match_values
        self.config = config
        self._expression: Any = None
        if mode == "literal":
            if match_values is None:
                raise ValueError("message_filtering='literal' needs message_filtering_match_values")
        else:
            if not isinstance(config, str) or not config:
                raise ValueError(f"message_filtering={mode!r} needs message_filtering_config, a JSONPath expression")
            try:
                import jsonpath_ng
                import jsonpath_ng.ext
            except ImportError as exc:
                raise ImportError(
                    "message_filtering with JSONPath needs jsonpath-ng: pip install 'herald[sqs]'"
                ) from exc
            try:
                module: Any = jsonpath_ng if mode == "jsonpath" else jsonpath_ng.ext
                parse = module.parse
                self._expression = parse(config)
            except Exception as exc:
                raise ValueError(f"invalid JSONPath expression {config!r}: {exc}") from None

    def matches(self, body: str) -> bool:
        """True when the message with this body is kept.

        Raises:
            ValueError: in a JSONPath mode, when the body is not JSON (the message
                becomes a dead letter with that reason).
        """
        if self.mode == "literal":
            return body in self.match_values
        found = self._expression.find(json.loads(body))
        if not found:
            return False
        return self.match_values is None or any(match.value in self.match_values for match in found)
