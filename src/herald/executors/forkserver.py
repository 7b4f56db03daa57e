"""Imported first by the local workers' fork server (and by nothing else): it dies with Herald.

The workers are forks of this server, and Linux tells a process of its
parent's death only: each worker asks to be killed when the server dies
(`worker_main`), and the server, by importing this module, asks to be killed
when the Herald process that started it dies, kill -9 included. Without it a
killed Herald would leave the server, and the workers with their tasks,
running: the server never sees its end of the pipe close while a worker holds
a copy of it.
"""

from __future__ import annotations

import signal

from herald.executors.reaper import die_with_parent

die_with_parent(signal.SIGKILL)
