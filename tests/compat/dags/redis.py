"""A DAG file named like a library, importing a helper module kept beside it."""

import pendulum
from airflow.sdk import DAG, task
from compat_helpers import double

with DAG("compat_redis_named", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:

    @task
    def compute():
        import redis

        return {"doubled": double(21), "redis_is_the_library": hasattr(redis, "Redis")}

    compute()
