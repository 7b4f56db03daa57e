"""`@asset` and `@asset.multi`: a one-task DAG whose task emits events of the assets it defines.

```python
@asset(schedule="@daily", uri="s3://bucket/orders")
def orders(self, context):          # `self` is the asset, `context` the task's context
    yield Metadata(self, extra={"rows": 10})

@asset(schedule=orders)
def report(orders):                  # a parameter named after an asset receives that asset (an inlet)
    ...
```

`orders` is then an `Asset` named after the function, usable in any schedule.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Sequence
from typing import Any

from herald.sdk.assets import Asset, AssetAlias, AssetNameRef, BaseAsset

#: DAG arguments `@asset` takes besides `schedule`, as Airflow names them
_DAG_ARGUMENTS = (
    "is_paused_upon_creation",
    "dag_id",
    "dag_display_name",
    "description",
    "params",
    "on_success_callback",
    "on_failure_callback",
    "access_control",
    "owner_links",
    "tags",
)


def _check_function(fn: Callable[..., Any]) -> None:
    if not callable(fn):
        raise TypeError(f"@asset decorates a function, got {fn!r}")
    if fn.__name__ != fn.__qualname__:
        raise ValueError("nested function not supported")
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind is param.VAR_POSITIONAL:
            raise TypeError(f"wildcard '*{name}' is not supported in @asset")
        if param.kind is param.VAR_KEYWORD:
            raise TypeError(f"wildcard '**{name}' is not supported in @asset")
        if param.kind is param.POSITIONAL_ONLY and param.default is param.empty:
            raise TypeError(f"positional-only argument '{name}' without a default is not supported in @asset")


def inlet_names(fn: Callable[..., Any]) -> list[str]:
    """The assets an `@asset` function reads: its parameters without a default, but `self` and `context`."""
    return [
        name
        for name, param in inspect.signature(fn).parameters.items()
        if name not in ("self", "context") and param.default is param.empty
    ]


def _stored_asset(context: dict[str, Any], name: str) -> Asset:
    """The asset `name` as stored (its URI, group, extra): from the inlet events the try request
    carried, else from the events that triggered the run, else only its name."""
    inlets = context.get("inlet_events")
    found = inlets.asset(name) if inlets is not None and hasattr(inlets, "asset") else None
    if found is None:
        triggering = context.get("triggering_asset_events") or {}
        found = next((a for a in triggering if isinstance(a, Asset) and a.name == name), None)
    return found if found is not None else Asset(name)


def _task_function(fn: Callable[..., Any], definition: BaseAsset) -> Callable[..., Any]:
    """The task's function: calls `fn` with the asset (`self`), the context and its inlet assets."""
    from herald.sdk.context import get_current_context

    def arguments() -> dict[str, Any]:
        context = get_current_context()
        values: dict[str, Any] = {}
        for name, param in inspect.signature(fn).parameters.items():
            if param.default is not param.empty:
                values[name] = param.default
            elif name == "self":
                values[name] = definition
            elif name == "context":
                values[name] = context
            else:
                values[name] = _stored_asset(context, name)
        return values

    if inspect.isgeneratorfunction(fn):
        # Stay a generator function, so that the Metadata it yields reaches the task runner.
        def run_generator() -> Any:
            return (yield from fn(**arguments()))

        run: Callable[..., Any] = run_generator
    else:

        def run_plain() -> Any:
            return fn(**arguments())

        run = run_plain
    run.__name__ = run.__qualname__ = fn.__name__
    run.__doc__ = fn.__doc__
    run.__module__ = fn.__module__
    return run


class _DagFactory:
    """The DAG arguments `@asset` and `@asset.multi` share."""

    def __init__(self, *, schedule: Any, **dag_arguments: Any) -> None:
        unknown = set(dag_arguments) - set(_DAG_ARGUMENTS)
        if unknown:
            raise TypeError(
                f"@asset got unknown argument(s) {sorted(unknown)}; known: schedule, {', '.join(_DAG_ARGUMENTS)}"
            )
        self.schedule = schedule
        self.dag_arguments = {k: v for k, v in dag_arguments.items() if v is not None and v != {} and v != ()}

    def build_dag(
        self,
        *,
        default_dag_id: str,
        fn: Callable[..., Any],
        definition: BaseAsset,
        outlets: Sequence[Asset | AssetAlias],
    ) -> Any:
        """Build and register the one-task DAG (`herald.sdk.dag.dag`, so the loader collects it)."""
        from herald.sdk.dag import dag, task

        arguments = dict(self.dag_arguments)
        dag_id = arguments.pop("dag_id", None) or default_dag_id
        accepted = inspect.signature(dag).parameters
        for name in arguments:
            if name not in accepted:
                # An argument that may change what runs (a callback, a paused start) is
                # refused rather than dropped.
                raise TypeError(f"@asset: DAG argument {name!r} is not supported by Herald's DAG")
        arguments.setdefault("description", inspect.getdoc(fn) or None)
        runner = _task_function(fn, definition)
        task_kwargs: dict[str, Any] = {"task_id": fn.__name__, "outlets": list(outlets)}
        if "inlets" in inspect.signature(task).parameters:
            task_kwargs["inlets"] = [AssetNameRef(name) for name in inlet_names(fn)]

        def body() -> None:
            make: Any = task(**task_kwargs)
            make(runner)()

        body.__name__ = body.__qualname__ = fn.__name__
        body.__module__ = fn.__module__
        built: Any = dag(dag_id=dag_id, schedule=self.schedule, **arguments)
        return built(body)()


class AssetDefinition(Asset):
    """The asset an `@asset` function defines; also the source of its one-task DAG (`.dag`)."""

    def __init__(self, fn: Callable[..., Any], source: asset, **asset_arguments: Any) -> None:
        super().__init__(**asset_arguments)
        self.function = fn
        self.source = source
        self.dag = source.build_dag(default_dag_id=self.name, fn=fn, definition=self, outlets=[self])


class MultiAssetDefinition(BaseAsset):
    """What `@asset.multi` returns: the DAG emitting several assets, usable where its outlets would be."""

    def __init__(self, fn: Callable[..., Any], source: _Multi) -> None:
        self.function = fn
        self.source = source
        self.dag = source.build_dag(
            default_dag_id=fn.__name__,
            fn=fn,
            definition=self,
            outlets=[o for o in source.outlets if isinstance(o, Asset | AssetAlias)],
        )

    def iter_assets(self) -> Any:
        for outlet in self.source.outlets:
            yield from outlet.iter_assets()

    def iter_asset_aliases(self) -> Any:
        for outlet in self.source.outlets:
            yield from outlet.iter_asset_aliases()

    def evaluate(self, ready: set[str]) -> bool:
        return any(outlet.evaluate(ready) for outlet in self.source.outlets)

    def describe(self) -> Any:
        return {"any": [outlet.describe() for outlet in self.source.outlets]}


class _Multi(_DagFactory):
    """`@asset.multi(outlets=[...], schedule=...)`: one task emitting events of several assets."""

    def __init__(self, *, outlets: Collection[BaseAsset], schedule: Any, **dag_arguments: Any) -> None:
        super().__init__(schedule=schedule, **dag_arguments)
        self.outlets = list(outlets)
        for outlet in self.outlets:
            if not isinstance(outlet, Asset | AssetAlias):
                raise TypeError(f"@asset.multi outlets must be Assets or AssetAliases, got {outlet!r}")

    def __call__(self, fn: Callable[..., Any]) -> MultiAssetDefinition:
        _check_function(fn)
        if not self.outlets:
            raise ValueError("no outlets provided")
        return MultiAssetDefinition(fn, self)


class asset(_DagFactory):
    """Define an asset by the function that materialises it: a one-task DAG emitting its events.

    Args:
        schedule: when the DAG runs: a cron string, assets, an asset expression, or None.
        name: the asset's name (default: the function's name).
        uri: the asset's URI (default: its name).
        group: the asset's group (default `"asset"`).
        extra: the asset's extra.
        watchers: the asset's watchers.
        **dag_arguments: `dag_id` (default: the asset's name), `description`,
            `params`, `tags` and Airflow's other DAG arguments that Herald's DAG takes.
    """

    multi = _Multi

    def __init__(
        self,
        *,
        schedule: Any,
        name: str | None = None,
        uri: str | None = None,
        group: str = Asset.asset_type,
        extra: dict[str, Any] | None = None,
        watchers: Sequence[Any] | None = None,
        **dag_arguments: Any,
    ) -> None:
        super().__init__(schedule=schedule, **dag_arguments)
        self.name = name
        self.uri = uri
        self.group = group
        self.extra = dict(extra or {})
        self.watchers = list(watchers or [])

    def __call__(self, fn: Callable[..., Any]) -> AssetDefinition:
        _check_function(fn)
        name = self.name or fn.__name__
        return AssetDefinition(
            fn,
            self,
            name=name,
            uri=name if self.uri is None else str(self.uri),
            group=self.group,
            extra=self.extra,
            watchers=self.watchers,
        )
