"""Load DAG files from a folder: every good DAG, and the import error of every bad file."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from herald.dagcheck import FileChecker, Stamp, Verdict, stamp
from herald.sdk.dag import DAG, collect_dags
from herald.triggers.urls import mask_url


@dataclass
class DagBag:
    """The DAGs of a folder, the errors of the files that failed, and the files' mtimes."""

    folder: Path
    dags: dict[str, DAG] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    mtimes: dict[str, float] = field(default_factory=dict)
    #: the files imported, each with the version imported (what the workers may import)
    files: dict[str, Stamp] = field(default_factory=dict)


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


#: the start of the module name each DAG file is imported under (`module_name`)
DAG_MODULE_PREFIX = "herald_dag_"


def module_name(path: str) -> str:
    """The module name the DAG file at `path` is imported under (the same in every process given that path)."""
    return DAG_MODULE_PREFIX + hashlib.sha1(path.encode()).hexdigest()[:12]


def load_file(path: str, folder: Path | None = None) -> list[DAG]:
    """Import one DAG file and return the DAGs it defines (raises what the import raises).

    While the file runs, its own folder, the DAGs folder and the project root
    (the DAGs folder's parent, where Astro projects keep `dags/`) are on
    `sys.path` as Airflow puts its DAGs folder there, and the module is known
    under the file's stem: a dotted name such as Airflow's guide's
    `"kafka_example_dag.apply_function"` or Astro's `"dags.module.fn"` resolves
    while the DAG file loads, never later per message.
    """
    name = module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    here = Path(path).resolve().parent
    roots = [here]
    if folder is not None:
        roots += [folder.resolve(), folder.resolve().parent]
    added = [str(p) for p in dict.fromkeys(roots) if str(p) not in sys.path]
    # Appended, not prepended: a DAG file named like a library (redis.py) never hides it.
    sys.path.extend(added)
    # Airflow DAGs name their apply_function as "dag_file_stem.function": that name
    # finds this module (before and after its body ran) instead of importing the file
    # a second time, unless the name is a library's (a DAG file called redis.py must
    # never shadow redis).
    stem = Path(path).stem
    alias = stem.isidentifier() and stem not in sys.modules and _is_own_module(stem, path)
    if alias:
        sys.modules[stem] = module
    try:
        with collect_dags() as built:
            spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        if alias and sys.modules.get(stem) is module:
            sys.modules.pop(stem, None)
        raise
    finally:
        # The DAGs folder stays on the path for the whole load (load_folder puts it
        # there); the other folders only while this file runs.
        for entry in added:
            if folder is None or entry != str(folder.resolve()):
                with contextlib.suppress(ValueError):
                    sys.path.remove(entry)
    found: dict[int, DAG] = {id(d): d for d in built}
    for value in vars(module).values():
        if isinstance(value, DAG):
            found.setdefault(id(value), value)
    for dag in found.values():
        dag.fileloc = path
        dag.validate()
    return list(found.values())


def _is_own_module(name: str, path: str) -> bool:
    """True when `import name` would find this very file (no installed module of that name)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    if spec is None or spec.origin is None:
        return spec is None
    try:
        return Path(spec.origin).resolve() == Path(path).resolve()
    except OSError:
        return False


def load_folder(folder: Path, *, checker: FileChecker | None = None, only: Mapping[str, Stamp] | None = None) -> DagBag:
    """Import every DAG file of `folder`; one file's failure never hides another's DAGs.

    Args:
        checker: first check each file in a separate process with a time limit
            (`herald.dagcheck`): only the files that imported cleanly there, and did
            not change since, are imported here; the others are import errors.
        only: import just these files, and only while their stamp is still the one
            given (a worker importing what its scheduler checked: `DagBag.files`).
    """
    folder = folder.resolve()
    bag = DagBag(folder=folder, mtimes=dag_files(folder))
    if str(folder) not in sys.path:
        # DAG files may import helper modules kept beside them, as in Airflow; the folder
        # comes after the installed packages, so a DAG file named like a library
        # (redis.py, json.py) never hides that library.
        sys.path.append(str(folder))
    paths = list(bag.mtimes)
    verdicts: dict[str, Verdict] = {}
    if checker is not None:
        verdicts = checker.check(paths, folder)
        checker.retain(paths)
    for path in paths:
        if checker is not None:
            verdict = _still_good(checker, verdicts.get(path), path, folder)
            if verdict is None:
                continue  # deleted meanwhile: the next reload sees it gone
            if verdict.error is not None:
                bag.errors[path] = verdict.error
                continue
            version: Stamp | None = verdict.stamp
        else:
            version = stamp(path)
            if only is not None and (path not in only or only[path] != version):
                continue
        try:
            dags = load_file(path, folder)
            for dag in dags:
                if dag.dag_id in bag.dags:
                    other = bag.dags[dag.dag_id].fileloc
                    raise ValueError(f"DAG id {dag.dag_id!r} is already defined in {other}")
                check_dag(dag)
        except (Exception, SystemExit):
            bag.errors[path] = traceback.format_exc(limit=-8)
            continue
        for dag in dags:
            bag.dags[dag.dag_id] = dag
        if version is not None:
            bag.files[path] = version
    return bag


def _still_good(checker: FileChecker, verdict: Verdict | None, path: str, folder: Path) -> Verdict | None:
    """`verdict`, checked again when the file changed since (it is the checked version that gets imported)."""
    for _ in range(3):
        if verdict is None or verdict.stamp == stamp(path):
            return verdict
        verdict = checker.check([path], folder).get(path)
    return Verdict(verdict.stamp, "the file kept changing while it was checked") if verdict is not None else None


def check_dag(dag: DAG) -> None:
    """What makes a DAG unusable though its file imported: raises naming the problem.

    Each watcher's trigger must describe itself and name its consumer (a broker URL
    with a port out of range fails here), so that a bad URL is an import error of
    its own file, never a failure of the whole folder's sync.
    """
    condition = dag.schedule_condition
    if condition is None:
        return
    for asset in condition.iter_assets():
        names = [w.name for w in asset.watchers]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"asset {asset.name!r} has two watchers named {sorted(dupes)}")
        for watcher in asset.watchers:
            where = f"watcher {watcher.name!r} of asset {asset.name!r}"
            bad = _bad_port(watcher.trigger)
            if bad is not None:
                raise ValueError(f"{where}: {bad}")
            try:
                watcher.trigger.describe()
                watcher.trigger.consumer_key()
            except Exception as exc:
                raise ValueError(f"{where}: its trigger is not usable: {type(exc).__name__}: {exc}") from exc


def _bad_port(trigger: object) -> str | None:
    """Why the broker address of `trigger` has an unusable port, or None.

    A port out of range would otherwise fail only when the watcher connects, and be
    retried for ever; urllib checks it only when asked. Triggers keep their address
    as `url` or `server` (a URL) or `bootstrap` (Kafka's `host:port,host:port`).
    """
    addresses: list[str] = []
    for name in ("url", "server"):
        value = getattr(trigger, name, None)
        if isinstance(value, str):
            addresses.append(value)
    bootstrap = getattr(trigger, "bootstrap", None)
    if isinstance(bootstrap, str):
        addresses += [f"//{host.strip()}" for host in bootstrap.split(",") if host.strip()]
    for address in addresses:
        try:
            urlsplit(address).port  # noqa: B018 (the property validates)
        except ValueError as exc:
            return f"the address {mask_url(address.removeprefix('//'))!r} has a bad port: {exc}"
    return None


def changed(bag: DagBag) -> bool:
    """True when a DAG file was added, removed or modified since `bag` was loaded."""
    return dag_files(bag.folder) != bag.mtimes
