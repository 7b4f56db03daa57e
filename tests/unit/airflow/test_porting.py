"""`herald port`: imports rewritten byte for byte, unsupported names and import errors reported with lines."""

from __future__ import annotations

import textwrap
from pathlib import Path

import typer
from typer.testing import CliRunner

from herald.cli.port import port
from herald.porting import port_folder, rewrite

SOURCE = textwrap.dedent(
    """\
    # a DAG written for Airflow
    import json
    import airflow
    import airflow.providers.standard.operators.bash as bash_ops
    from airflow.sdk import DAG, task
    from airflow.providers.standard.operators.python import (
        PythonOperator,  # the classic one
        BranchPythonOperator as Branch,
    )

    def f():
        from airflow.exceptions import AirflowSkipException
        return json.dumps({"x": "from airflow import nothing"})
    """
)


def test_rewrite_changes_only_the_airflow_imports() -> None:
    text, problems, names = rewrite(SOURCE)
    assert problems == []
    assert text == textwrap.dedent(
        """\
        # a DAG written for Airflow
        import json
        import herald as airflow
        import herald as bash_ops
        from herald import DAG, task
        from herald import PythonOperator, BranchPythonOperator as Branch

        def f():
            from herald import AirflowSkipException
            return json.dumps({"x": "from airflow import nothing"})
        """
    )
    assert [n for _, n, _ in names] == ["DAG", "task", "PythonOperator", "BranchPythonOperator", "AirflowSkipException"]


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(port)
    return app


def test_port_writes_the_folder_and_reports_per_file(tmp_path: Path) -> None:
    src = tmp_path / "airflow_dags"
    src.mkdir()
    (src / "good.py").write_text(
        "import pendulum\nfrom airflow.sdk import DAG\n"
        "from airflow.providers.standard.operators.empty import EmptyOperator\n"
        "with DAG('good', start_date=pendulum.datetime(2024, 1, 1), schedule=None, access_control={'a': 1}):\n"
        "    EmptyOperator(task_id='a')\n"
    )
    (src / "helper_user.py").write_text("from airflow.sdk import DAG\nimport common\nDAG(common.NAME)\n")
    (src / "common.py").write_text("NAME = 'from_helper'\n")
    (src / "sql.txt").write_text("SELECT 1")
    (src / "pod.py").write_text(
        "from airflow.sdk import DAG\n"
        "from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator\n"
    )
    (src / "broken.py").write_text("from airflow.sdk import DAG\n\nDAG('broken', schedule_interval='@daily')\n")
    dest = tmp_path / "herald_dags"
    result = CliRunner().invoke(_app(), [str(src), str(dest)])
    assert result.exit_code == 1, result.output
    out = result.output
    assert f"{src / 'good.py'}: ok" in out
    assert "warning: DAG good: DAG argument access_control" in out
    assert f"{src / 'helper_user.py'}: ok" in out
    assert f"{src / 'pod.py'}:2: `KubernetesPodOperator`" in out and "kubectl" in out
    assert f"{src / 'broken.py'}:3: ValueError" in out and "schedule=" in out
    assert (dest / "sql.txt").read_text() == "SELECT 1"
    assert (dest / "good.py").read_text().startswith("import pendulum\nfrom herald import DAG\n")

    check = CliRunner().invoke(_app(), [str(src), "--check"])
    assert check.exit_code == 1 and "4 of 5 file(s) port" not in check.output  # pod and broken fail
    assert "3 of 5 file(s) port" in check.output


def test_port_exits_zero_when_everything_ports(tmp_path: Path) -> None:
    src = tmp_path / "dags"
    src.mkdir()
    (src / "fine.py").write_text("from airflow.decorators import dag, task\n")
    reports = port_folder(src, None)
    assert [r.ok for r in reports] == [True]
    assert CliRunner().invoke(_app(), [str(src), str(tmp_path / "out")]).exit_code == 0
    assert CliRunner().invoke(_app(), [str(src), str(src / "inside")]).exit_code == 2
