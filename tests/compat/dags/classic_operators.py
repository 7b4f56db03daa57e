"""Classic operators: PythonOperator, BashOperator, EmptyOperator, templates and XCom."""

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

default_args = {"owner": "data", "retries": 1}


def extract(source, ti, **context):
    ti.xcom_push(key="rows", value=3)
    return {"source": source, "run_id": context["run_id"], "conf": context["dag_run"].conf}


def summarize(templates_dict, **context):
    return {"rows": templates_dict["rows"], "message": context["ti"].xcom_pull(task_ids="shout")}


with DAG(
    dag_id="compat_classic",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    default_args=default_args,
    tags=["compat"],
    params={"who": "world"},
) as dag:
    start = EmptyOperator(task_id="start")
    get = PythonOperator(task_id="extract", python_callable=extract, op_kwargs={"source": "{{ params.who }}"})
    shout = BashOperator(
        task_id="shout",
        bash_command="echo \"rows={{ ti.xcom_pull(task_ids='extract', key='rows') }}\"; echo \"hello $WHO\"",
        env={"WHO": "{{ params.who }}"},
        append_env=True,
    )
    report = PythonOperator(
        task_id="summarize",
        python_callable=summarize,
        templates_dict={"rows": "{{ ti.xcom_pull(task_ids='extract', key='rows') }}"},
    )
    start >> get >> shout >> report
