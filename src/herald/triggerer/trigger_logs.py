"""What a deferred try's trigger logs goes into that try's log, as Airflow shows it in the task's log.

Triggers run as tasks on the triggers' loop (`task_triggers.py`), many at once in
one thread, so the capture follows the running trigger through a context
variable: each trigger's coroutine sets its own buffer, and the log records made
while it runs (in its task and the tasks it starts) are written there.

- The trigger's own logger (`self.log`) is captured from INFO, as Airflow's task
  log shows it; its records reach the triggerer's process log only at the
  process's level (HERALD_LOG_LEVEL), so a chatty trigger does not flood it.
- Other loggers (the trigger's modules, the libraries it calls) are captured at
  whatever level they pass.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from herald.store.storable import TailBuffer

_buffer: ContextVar[TailBuffer | None] = ContextVar("herald_trigger_log", default=None)
_FORMAT = logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s")
_MARK = "herald_trigger_log"


def _keep(record: logging.LogRecord) -> None:
    """Write `record` to the running trigger's buffer, once (a record reaches two of these hooks)."""
    buffer = _buffer.get()
    if buffer is None or getattr(record, _MARK, False):
        return
    setattr(record, _MARK, True)
    try:
        buffer.write(_FORMAT.format(record) + "\n")
    except Exception:  # a record whose message cannot be formatted: the trigger goes on
        buffer.write(f"[unformattable log record from {record.name}: {record.msg!r}]\n")


class _Everything(logging.Handler):
    """On the root logger: what any logger passes while a trigger runs."""

    def emit(self, record: logging.LogRecord) -> None:
        _keep(record)


class _OwnLogger(logging.Filter):
    """On a trigger's own logger: keep its records from INFO, pass on only what the process logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        _keep(record)
        return record.levelno >= logging.getLogger().getEffectiveLevel()


_ROOT_HANDLER = _Everything()
_OWN = _OwnLogger()


def watch_logger(logger: logging.Logger) -> None:
    """Capture a trigger's own logger from INFO (once per logger; a level the user set is kept)."""
    if _OWN in logger.filters:
        return
    logger.addFilter(_OWN)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


@contextmanager
def capturing(limit: int) -> Iterator[TailBuffer]:
    """Capture, within `limit` bytes (its tail), what is logged in this context until the block ends."""
    root = logging.getLogger()
    if _ROOT_HANDLER not in root.handlers:
        root.addHandler(_ROOT_HANDLER)
    buffer = TailBuffer(limit)
    token = _buffer.set(buffer)
    try:
        yield buffer
    finally:
        _buffer.reset(token)
