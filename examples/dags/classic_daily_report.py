"""A classic-operator DAG, as written for Airflow (imports changed to herald): a daily sales report.

Operators, default_args, Jinja templates, a task group and XComs. Try it:
    herald dags trigger classic_daily_report --conf '{"region": "north"}'
"""

from __future__ import annotations

from datetime import timedelta

import pendulum

from herald import DAG, BashOperator, EmptyOperator, Param, PythonOperator, TaskGroup

default_args = {"owner": "analytics", "retries": 2, "retry_delay": timedelta(seconds=10)}


def fetch_sales(region: str, ds: str, ti) -> list[dict]:
    """Pretend to read one day of sales for a region."""
    rows = [{"region": region, "day": ds, "amount": amount} for amount in (120.0, 80.5, 42.25)]
    ti.xcom_push(key="row_count", value=len(rows))
    return rows


def summarise(ti, params) -> dict:
    rows = ti.xcom_pull(task_ids="extract.fetch_sales")
    total = round(sum(r["amount"] for r in rows), 2)
    return {"region": params["region"], "rows": len(rows), "total": total}


with DAG(
    dag_id="classic_daily_report",
    schedule="0 6 * * *",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    default_args=default_args,
    params={"region": Param("south", type="string", enum=["north", "south", "east", "west"])},
    tags=["example", "classic"],
    doc_md=__doc__,
) as dag:
    start = EmptyOperator(task_id="start")
    with TaskGroup("extract") as extract:
        fetch = PythonOperator(
            task_id="fetch_sales",
            python_callable=fetch_sales,
            op_kwargs={"region": "{{ params.region }}"},
        )
    report = PythonOperator(task_id="summarise", python_callable=summarise)
    announce = BashOperator(
        task_id="announce",
        bash_command='echo "report for {{ params.region }} on {{ ds }}: '
        "{{ ti.xcom_pull(task_ids='summarise')['total'] }}\"",
    )
    start >> extract >> report >> announce
