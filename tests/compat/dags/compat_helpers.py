"""A helper module beside the DAG files, imported as in Airflow."""


def double(x):
    return 2 * x
