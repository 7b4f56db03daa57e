"""Where tasks run: a pool of pre-started local processes, or Celery workers."""
