"""Sensors: PythonSensor in poke mode and @task.sensor with PokeReturnValue."""

import os
import tempfile

import pendulum
from airflow.providers.standard.sensors.python import PythonSensor
from airflow.sdk import DAG, PokeReturnValue, task

MARKER = os.path.join(tempfile.gettempdir(), "herald_compat_sensor_{{ run_id }}")


def file_is_there(path):
    return os.path.exists(path)


with DAG("compat_sensors", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:

    @task
    def make_marker(**context):
        path = os.path.join(tempfile.gettempdir(), f"herald_compat_sensor_{context['run_id']}")
        open(path, "w").close()
        return path

    wait = PythonSensor(
        task_id="wait_for_file", python_callable=file_is_there, op_args=[MARKER], poke_interval=0.2, timeout=60
    )

    @task.sensor(poke_interval=0.2, timeout=60, mode="poke")
    def wait_for_value(path):
        return PokeReturnValue(is_done=os.path.exists(path), xcom_value={"seen": path})

    marker = make_marker()
    marker >> wait >> wait_for_value(marker)
