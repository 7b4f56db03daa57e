"""Load DAG files from a folder: every good DAG, and the import error of every bad file."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from herald.sdk.dag import DAG, collect_dags


@dataclass
class DagBag:
    """The DAGs of a folder, the errors of the files that failed, and the files' mtimes."""

    folder: Path
    dags: dict[str, DAG] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    mtimes: dict[str, float] = field(default_factory=dict)


def dag_files(folder: Path) -> dict[str, float]:
    """Python files under `folder` (not starting with `_` or `.`), with their mtimes."""
    found: dict[str, float] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.rglob("*.py")):
        if any(part.startswith((".", "_")) for part in path.relative_to(folder).parts):
            continue
        try:
            found[str(path)] = path.stat().st_mtime
        except FileNotFoundError:
            continue
    return found


def load_file(path: str) -> list[DAG]:
    """Import one DAG file and return the DAGs it defines (raises what the import raises)."""
    module_name = "herald_dag_" + hashlib.sha1(path.encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        with collect_dags() as built:
            spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    # Airflow DAGs name their apply_function as "dag_file_stem.function": let that
    # name find this module instead of importing the file a second time.
    sys.modules.setdefault(Path(path).stem, module)
    found: dict[int, DAG] = {id(d): d for d in built}
    for value in vars(module).values():
        if isinstance(value, DAG):
            found.setdefault(id(value), value)
    for dag in found.values():
        dag.fileloc = path
    return list(found.values())


def load_folder(folder: Path) -> DagBag:
    """Import every DAG file of `folder`; one file's failure never hides another's DAGs."""
    folder = folder.resolve()
    bag = DagBag(folder=folder, mtimes=dag_files(folder))
    if str(folder) not in sys.path:
        # DAG files may import helper modules kept beside them, as in Airflow.
        sys.path.insert(0, str(folder))
    for path in bag.mtimes:
        try:
            dags = load_file(path)
            for dag in dags:
                if dag.dag_id in bag.dags:
                    other = bag.dags[dag.dag_id].fileloc
                    raise ValueError(f"DAG id {dag.dag_id!r} is already defined in {other}")
                _check_watchers(dag)
        except (Exception, SystemExit):
            bag.errors[path] = traceback.format_exc(limit=-8)
            continue
        for dag in dags:
            bag.dags[dag.dag_id] = dag
    return bag


def _check_watchers(dag: DAG) -> None:
    condition = dag.asset_condition
    if condition is None:
        return
    for asset in condition.iter_assets():
        names = [w.name for w in asset.watchers]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"asset {asset.name!r} has two watchers named {sorted(dupes)}")


def changed(bag: DagBag) -> bool:
    """True when a DAG file was added, removed or modified since `bag` was loaded."""
    return dag_files(bag.folder) != bag.mtimes
