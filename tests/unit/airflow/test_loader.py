"""The DAGs folder: helper modules import as in Airflow; DAG files named like libraries shadow nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from herald.loader import load_folder

DAG_FILE = """
from herald import DAG, EmptyOperator
import helpers

with DAG(helpers.dag_id("{name}")):
    EmptyOperator(task_id="a")
"""


def test_dag_files_named_like_libraries_do_not_shadow_them(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("def dag_id(name):\n    return 'dag_' + name\n")
    for name in ("redis", "nats", "json", "kafka"):
        (tmp_path / f"{name}.py").write_text(DAG_FILE.format(name=name))
    try:
        bag = load_folder(tmp_path)
        assert bag.errors == {}
        assert {"dag_redis", "dag_nats", "dag_json", "dag_kafka"} <= set(bag.dags)
        assert sys.modules["json"] is json and not sys.modules["json"].__file__.startswith(str(tmp_path))  # type: ignore[union-attr]
        import redis

        assert not str(redis.__file__).startswith(str(tmp_path))
        assert sys.path.index(str(tmp_path.resolve())) > 0
    finally:
        sys.path.remove(str(tmp_path.resolve()))
        sys.modules.pop("helpers", None)


KAFKA_DAG = """
from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

def keep(*args):
    return args[-1].value().decode()

trigger = MessageQueueTrigger(queue="kafka://127.0.0.1:9092/t", apply_function="{dotted}")
orders = Asset("{asset}", watchers=[AssetWatcher(name="w", trigger=trigger)])

@dag(dag_id="{asset}", schedule=[orders])
def consume():
    @task
    def t():
        pass
    t()

consume()
"""


def _forget(folder: Path, *names: str) -> None:
    for entry in (str(folder.resolve()), str(folder.resolve().parent)):
        while entry in sys.path:
            sys.path.remove(entry)
    for name in [n for n, m in sys.modules.items() if str(getattr(m, "__file__", "") or "").startswith(str(folder))]:
        sys.modules.pop(name, None)
    for name in names:
        sys.modules.pop(name, None)


def test_apply_function_names_resolve_as_in_airflow_and_astro(tmp_path: Path) -> None:
    # Given an Astro project: the DAGs folder is `dags/` under the project root
    folder = tmp_path / "dags"
    (folder / "include").mkdir(parents=True)
    (folder / "include" / "parsing.py").write_text(
        "def parse(message):\n    return 'parsed:' + message.value().decode()\n"
    )
    (folder / "own_guide.py").write_text(KAFKA_DAG.format(dotted="own_guide.keep", asset="own"))
    (folder / "astro_own.py").write_text(KAFKA_DAG.format(dotted="dags.astro_own.keep", asset="astro"))
    (folder / "helper_user.py").write_text(KAFKA_DAG.format(dotted="include.parsing.parse", asset="helper"))
    (folder / "unknown.py").write_text(KAFKA_DAG.format(dotted="nowhere_module.fn", asset="unknown"))
    (folder / "no_function.py").write_text(KAFKA_DAG.format(dotted="include.parsing.missing", asset="nofn"))
    try:
        bag = load_folder(folder)
        # The file's own module (by its stem, and by the Astro path) and helper modules resolve at load time.
        assert {"own", "astro", "helper"} <= set(bag.dags)
        functions = {
            dag_id: next(iter(bag.dags[dag_id].asset_condition.iter_assets()))
            .watchers[0]
            .trigger.apply_function.function  # type: ignore[union-attr]
            for dag_id in ("own", "astro", "helper")
        }
        assert functions["own"].__name__ == "keep" and functions["helper"].__name__ == "parse"
        # The DAG file ran once: the function is the loaded module's, not a second import's.
        own_module = sys.modules["own_guide"]
        assert functions["own"] is own_module.keep
        assert functions["astro"].__module__ == bag.dags["astro"].tasks["t"].function.__module__
        # An unresolvable name is an import error of its DAG file, at load time.
        assert set(bag.errors) == {str(folder / "unknown.py"), str(folder / "no_function.py")}
        assert "cannot import module 'nowhere_module'" in bag.errors[str(folder / "unknown.py")]
        assert "has no function 'missing'" in bag.errors[str(folder / "no_function.py")]
    finally:
        _forget(folder, "own_guide", "dags", "include")
