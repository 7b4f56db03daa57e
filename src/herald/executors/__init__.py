"""Where tasks run, behind one `Executor` protocol (`base`), with typed wire records (`records`).

- `local`: a pool of pre-started processes in this process.
- `database`: tries queued in the database for `herald worker` (`worker_service`).
- `celery_executor`: tries published to Celery, run by `celery_worker`.

Nothing here imports `herald.scheduler`: the request builder is handed in.
"""
