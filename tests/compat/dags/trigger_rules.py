"""Trigger rules after a failure and a skip, and AirflowSkipException / AirflowFailException."""

import pendulum
from airflow.exceptions import AirflowFailException, AirflowSkipException
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG
from airflow.utils.trigger_rule import TriggerRule


def fail_hard():
    raise AirflowFailException("no retry for this")


def skip_me():
    raise AirflowSkipException("nothing to do")


with DAG("compat_trigger_rules", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    ok = EmptyOperator(task_id="ok")
    bad = PythonOperator(task_id="bad", python_callable=fail_hard, retries=3)
    skipped = PythonOperator(task_id="skipped", python_callable=skip_me)
    [ok, bad] >> EmptyOperator(task_id="all_success")
    [ok, bad] >> EmptyOperator(task_id="one_failed", trigger_rule=TriggerRule.ONE_FAILED)
    [ok, bad] >> EmptyOperator(task_id="all_done", trigger_rule=TriggerRule.ALL_DONE)
    [ok, bad] >> EmptyOperator(task_id="one_success", trigger_rule=TriggerRule.ONE_SUCCESS)
    [ok, bad] >> EmptyOperator(task_id="none_failed", trigger_rule=TriggerRule.NONE_FAILED)
    [ok, bad] >> EmptyOperator(task_id="all_failed", trigger_rule=TriggerRule.ALL_FAILED)
    [ok, skipped] >> EmptyOperator(task_id="none_skipped", trigger_rule=TriggerRule.NONE_SKIPPED)
    [ok, skipped] >> EmptyOperator(task_id="none_failed_after_skip", trigger_rule=TriggerRule.NONE_FAILED)
    skipped >> EmptyOperator(task_id="all_skipped", trigger_rule=TriggerRule.ALL_SKIPPED)
    skipped >> EmptyOperator(task_id="after_skip")
    [bad, skipped] >> EmptyOperator(task_id="always", trigger_rule=TriggerRule.ALWAYS)
