"""Jinja templating of templated fields, in a sandbox as Airflow renders them."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.nativetypes
import jinja2.sandbox

from herald.sdk.dag import DAG, DagParam, XComArg


class _NativeSandbox(jinja2.sandbox.SandboxedEnvironment, jinja2.nativetypes.NativeEnvironment):
    """`render_template_as_native_obj=True`: templates render to Python objects, still sandboxed."""

    code_generator_class = jinja2.nativetypes.NativeCodeGenerator
    concat = staticmethod(jinja2.nativetypes.native_concat)


def _date_filter(fmt: str) -> Any:
    def apply(value: datetime | None) -> str | None:
        return value.strftime(fmt) if value is not None else None

    return apply


def environment(dag: DAG | None) -> jinja2.Environment:
    """The Jinja environment of a DAG: its folder and template_searchpath, macros, filters, undefined."""
    searchpath: list[str] = []
    if dag is not None:
        if dag.fileloc:
            searchpath.append(os.path.dirname(dag.fileloc))
        searchpath.extend(dag.template_searchpath)
    options: dict[str, Any] = {
        "undefined": (dag.template_undefined if dag is not None and dag.template_undefined else jinja2.StrictUndefined),
        "extensions": ["jinja2.ext.do"],
        "cache_size": 0,
        "loader": jinja2.FileSystemLoader(searchpath),
    }
    if dag is not None:
        options.update(dag.jinja_environment_kwargs)
    native = dag is not None and dag.render_template_as_native_obj
    env: jinja2.Environment = (_NativeSandbox if native else jinja2.sandbox.SandboxedEnvironment)(**options)
    env.filters.update(
        {
            "ds": _date_filter("%Y-%m-%d"),
            "ds_nodash": _date_filter("%Y%m%d"),
            "ts": lambda v: v.isoformat() if v is not None else None,
            "ts_nodash": _date_filter("%Y%m%dT%H%M%S"),
            "ts_nodash_with_tz": lambda v: v.isoformat().replace("-", "").replace(":", "") if v is not None else None,
        }
    )
    if dag is not None:
        env.filters.update(dag.user_defined_filters)
        env.globals.update(dag.user_defined_macros)
    return env


def render(value: Any, context: dict[str, Any], env: jinja2.Environment, template_ext: Sequence[str] = ()) -> Any:
    """Render a templated value: strings (or template files), containers, XComArgs and templated objects."""
    if isinstance(value, str):
        if template_ext and value.endswith(tuple(template_ext)):
            try:
                template = env.get_template(value)
            except jinja2.TemplateNotFound:
                # Airflow treats an existing-looking script name as a file; a missing file is an error
                raise jinja2.TemplateNotFound(
                    f"{value} (a templated field ending in {', '.join(template_ext)} is read as a template file "
                    f"from the DAG's folder or template_searchpath)"
                ) from None
        else:
            if "{{" not in value and "{%" not in value and "{#" not in value:
                return value
            template = env.from_string(value)
        return template.render(**context)
    if isinstance(value, XComArg):
        return value.apply(context["ti"].xcom_pull(task_ids=value.task.task_id, key=value.key))
    if isinstance(value, DagParam):
        return context["params"].get(value.name, value.default)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        return type(value)(*(render(v, context, env, template_ext) for v in value))
    if isinstance(value, list | tuple):
        return type(value)(render(v, context, env, template_ext) for v in value)
    if isinstance(value, set):
        return {render(v, context, env, template_ext) for v in value}
    if isinstance(value, dict):
        return {k: render(v, context, env, template_ext) for k, v in value.items()}
    fields = getattr(value, "template_fields", None)
    if fields and not isinstance(value, type) and not callable(value):
        # an object with its own templated fields (Airflow renders those too)
        clone = copy.copy(value)
        for name in fields:
            if hasattr(clone, name):
                setattr(clone, name, render(getattr(clone, name), context, env, template_ext))
        return clone
    return value
