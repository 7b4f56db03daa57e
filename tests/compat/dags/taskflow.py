"""TaskFlow: @dag/@task, multiple_outputs, Param validation, get_current_context."""

import pendulum
from airflow.models.param import Param
from airflow.sdk import dag, get_current_context, task


@dag(
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={"count": Param(2, type="integer", minimum=1), "label": "x"},
    default_args={"retries": 0},
)
def compat_taskflow():
    @task(multiple_outputs=True)
    def make(params=None):
        return {"items": list(range(params["count"])), "label": params["label"]}

    @task
    def combine(items, label):
        context = get_current_context()
        return {
            "total": sum(items),
            "label": label,
            "task": context["ti"].task_id,
            "logical": str(context["logical_date"] is not None),
        }

    out = make()
    combine(out["items"], out["label"])


compat_taskflow()
