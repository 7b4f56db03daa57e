"""`EmptyOperator`: a task that does nothing (a join point or a placeholder)."""

from __future__ import annotations

from typing import Any, ClassVar

from herald.airflow.baseoperator import BaseOperator

__all__ = ["EmptyOperator"]


class EmptyOperator(BaseOperator):
    """Does nothing; useful to group dependencies and as a branch target."""

    ui_color: ClassVar[str] = "#e8f7e4"

    def execute(self, context: dict[str, Any]) -> None:
        """Nothing to do."""
        return None
