"""`Label`: a name on a dependency edge (`a >> Label("why") >> b`)."""

from __future__ import annotations

from typing import Any

from herald.sdk.dag import DependencyMixin, Task, set_dependency

__all__ = ["Label"]


class Label(DependencyMixin):
    """A label on the edges it sits on; it adds no task and changes no dependency but the ones it joins."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._upstream: list[Task] = []

    def _herald_receive_upstream(self, tasks: list[Task]) -> None:
        self._upstream.extend(tasks)

    def _herald_edge_tasks(self, side: str) -> list[Task]:
        return list(self._upstream) if side == "leaves" else []

    def __rshift__(self, other: Any) -> Any:
        set_dependency(self._upstream, other)
        return other

    def __repr__(self) -> str:
        return f"Label({self.label!r})"
