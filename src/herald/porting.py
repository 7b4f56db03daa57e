"""`herald port`: copy an Airflow DAG folder with its imports rewritten, then check every file imports.

`from airflow<any module> import X` becomes `from herald import X` and `import airflow...
as m` becomes `import herald as m`; every other byte of the file is kept. Names Herald
does not have are reported with file:line and the nearest replacement, and each file
is then imported as the DAG loader would, its error reported with its line.
"""

from __future__ import annotations

import ast
import shutil
import sys
import tempfile
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: what to use instead of an Airflow name Herald does not provide
REPLACEMENTS: dict[str, str] = {
    "Dataset": "Asset (Airflow 3's name)",
    "DatasetAlias": "Asset",
    "DummyOperator": "EmptyOperator",
    "days_ago": "pendulum.today('UTC').add(days=-N)",
    "PythonVirtualenvOperator": "PythonOperator (tasks run in the worker's environment)",
    "ExternalPythonOperator": "PythonOperator (tasks run in the worker's environment)",
    "BranchPythonVirtualenvOperator": "BranchPythonOperator",
    "BranchExternalPythonOperator": "BranchPythonOperator",
    "KubernetesPodOperator": "BashOperator running `kubectl run ...`, or a @task calling the Kubernetes client",
    "DockerOperator": "BashOperator running `docker run ...`",
    "ExternalTaskSensor": "an Asset: outlets=[asset] on the upstream task and schedule=[asset] on this DAG",
    "ExternalTaskMarker": "an Asset emitted by the upstream task",
    "FileSensor": "PythonSensor(python_callable=lambda: os.path.exists(path))",
    "TimeSensor": "PythonSensor comparing the time",
    "DayOfWeekSensor": "PythonSensor comparing the weekday",
    "SQLExecuteQueryOperator": "PythonOperator (or @task) using the database's client library",
    "HttpOperator": "@task using httpx or urllib",
    "SimpleHttpOperator": "@task using httpx or urllib",
    "HttpSensor": "PythonSensor polling with httpx or urllib",
    "EmailOperator": "@task using smtplib",
    "BranchDateTimeOperator": "BranchPythonOperator",
    "BranchDayOfWeekOperator": "BranchPythonOperator",
    "LatestOnlyOperator": "ShortCircuitOperator",
    "Timetable": "a cron string in schedule=",
    "CronDataIntervalTimetable": "the cron string in schedule=",
    "MultipleCronTriggerTimetable": "one DAG per cron string",
    "DatasetOrTimeSchedule": "AssetOrTimeSchedule (Airflow 3's name)",
    "XCom": "ti.xcom_pull(...) and ti.xcom_push(...)",
    "Session": "the task context (Herald tasks do not use the metadata database session)",
    "provide_session": "the task context",
    "settings": "herald.config.Settings",
    "conf": "herald.config.Settings",
    "TaskInstance": "the `ti` of the task context",
    "DagBag": "herald.loader.load_folder",
    "setup": "a first task, with trigger rules on the others",
    "teardown": "a final task with trigger_rule='all_done'",
}


@dataclass
class Problem:
    """One construct Herald does not support, at a line of a ported file."""

    line: int
    message: str


@dataclass
class FileReport:
    """What porting one file found: its problems and the warnings of its DAGs."""

    path: Path
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the file ports (no problem; warnings allowed)."""
        return not self.problems

    def lines(self, shown: str) -> Iterator[str]:
        """The report as printed: `FILE: ok`, or one `FILE:LINE: problem` per problem."""
        if self.ok:
            yield f"{shown}: ok"
            for warning in self.warnings:
                yield f"{shown}: warning: {warning}"
            return
        for problem in sorted(self.problems, key=lambda p: p.line):
            yield f"{shown}:{problem.line}: {problem.message}"


def _is_airflow(module: str | None) -> bool:
    return module is not None and (module == "airflow" or module.startswith("airflow."))


def _offsets(source: bytes) -> list[int]:
    starts = [0]
    for i, byte in enumerate(source):
        if byte == 0x0A:
            starts.append(i + 1)
    return starts


def rewrite(source: str) -> tuple[str, list[Problem], list[tuple[int, str, str]]]:
    """Rewrite the Airflow imports of one file.

    Returns the new source, the constructs that cannot be rewritten, and the imported
    names as (line, name, airflow module) for the check against Herald's names.
    """
    tree = ast.parse(source)
    data = source.encode("utf-8")
    starts = _offsets(data)
    edits: list[tuple[int, int, str]] = []
    problems: list[Problem] = []
    names: list[tuple[int, str, str]] = []
    for node in ast.walk(tree):
        replacement: str | None = None
        if isinstance(node, ast.ImportFrom) and node.level == 0 and _is_airflow(node.module):
            parts = []
            for alias in node.names:
                if alias.name == "*":
                    problems.append(
                        Problem(node.lineno, f"`from {node.module} import *`: import the names you use from herald")
                    )
                    continue
                names.append((node.lineno, alias.name, str(node.module)))
                parts.append(alias.name if alias.asname is None else f"{alias.name} as {alias.asname}")
            if parts:
                replacement = f"from herald import {', '.join(parts)}"
        elif isinstance(node, ast.Import) and any(_is_airflow(a.name) for a in node.names):
            parts = []
            for alias in node.names:
                if not _is_airflow(alias.name):
                    parts.append(f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else ""))
                elif alias.asname is not None:
                    parts.append(f"import herald as {alias.asname}")
                elif alias.name == "airflow":
                    parts.append("import herald as airflow")
                else:
                    problems.append(
                        Problem(
                            node.lineno,
                            f"`import {alias.name}`: Herald has no module {alias.name}; "
                            f"use `from herald import NAME` for the names you use",
                        )
                    )
            if parts:
                replacement = "; ".join(parts)
        if replacement is None or not isinstance(node, ast.stmt):
            continue
        if node.end_lineno is None or node.end_col_offset is None:
            continue
        begin = starts[node.lineno - 1] + node.col_offset
        end = starts[node.end_lineno - 1] + node.end_col_offset
        edits.append((begin, end, replacement))
    for begin, end, text in sorted(edits, reverse=True):
        data = data[:begin] + text.encode("utf-8") + data[end:]
    return data.decode("utf-8"), problems, names


def _unsupported(names: list[tuple[int, str, str]]) -> list[Problem]:
    import herald

    found = []
    for line, name, module in names:
        if not hasattr(herald, name):
            instead = REPLACEMENTS.get(name, "no Herald equivalent; call the library it wraps from a @task")
            found.append(Problem(line, f"`{name}` (from {module}) is not supported by Herald; use {instead}"))
    return found


def _import_problem(path: Path) -> tuple[list[Problem], list[str]]:
    """Import a ported file as the DAG loader does: its error with its line, else its DAGs' warnings."""
    from herald.loader import load_file

    folder = str(path.parent)
    added = folder not in sys.path
    if added:
        sys.path.append(folder)
    try:
        dags = load_file(str(path))
    except BaseException as exc:  # a DAG file's SystemExit is its problem, not the command's
        line = 0
        for frame in traceback.extract_tb(exc.__traceback__):
            if Path(frame.filename).resolve() == path.resolve():
                line = frame.lineno or 0
        return [Problem(line, f"{type(exc).__name__}: {exc}")], []
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
    return [], [f"DAG {dag.dag_id}: {w}" for dag in dags for w in dag.warnings]


def port_folder(src: Path, dest: Path | None) -> list[FileReport]:
    """Copy `src` to `dest` with Airflow imports rewritten (into a scratch folder when `dest` is None).

    Every non-Python file is copied unchanged. Returns one report per Python file.
    """
    src = src.resolve()
    scratch = None
    if dest is None:
        scratch = tempfile.TemporaryDirectory(prefix="herald_port_")
        dest = Path(scratch.name) / src.name
    dest = dest.resolve()
    try:
        if dest == src or src in dest.parents:
            raise ValueError(f"the destination {dest} must be outside the source folder {src}")
        shutil.copytree(src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        reports: list[FileReport] = []
        rewritten: list[tuple[Path, FileReport]] = []
        for path in sorted(src.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            target = dest / path.relative_to(src)
            report = FileReport(path.relative_to(src))
            try:
                text, problems, names = rewrite(path.read_text(encoding="utf-8"))
            except SyntaxError as exc:
                report.problems.append(Problem(exc.lineno or 0, f"SyntaxError: {exc.msg}"))
                reports.append(report)
                continue
            target.write_text(text, encoding="utf-8")
            report.problems.extend(problems)
            report.problems.extend(_unsupported(names))
            reports.append(report)
            rewritten.append((target, report))
        # import only after every file is written: DAG files may import their neighbours
        for target, report in rewritten:
            if report.ok and not any(part.startswith((".", "_")) for part in report.path.parts):
                problems, warnings = _import_problem(target)
                report.problems.extend(problems)
                report.warnings.extend(warnings)
        return reports
    finally:
        if scratch is not None:
            scratch.cleanup()
