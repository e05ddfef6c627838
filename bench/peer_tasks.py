"""The peer line's task, the same no-op for jobkit, raw Dramatiq and taskiq: it appends ``t_enqueue t_start`` to the
file in ``BENCH_RECORD_FILE`` with one ``write(2)`` (no Redis traffic), so the driver sees each start."""

from __future__ import annotations

import os
import time

_fd: int | None = None
_fd_pid = 0


def record(t: float) -> None:
    global _fd, _fd_pid
    now = time.time()
    if _fd is None or _fd_pid != os.getpid():  # (re)open after a fork
        _fd = os.open(os.environ["BENCH_RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _fd_pid = os.getpid()
    os.write(_fd, b"%.6f %.6f\n" % (t, now))


def peer(t: float) -> None:
    """jobkit's handler (bench/jobs.yaml: bench:peer): the payload arrives as keyword arguments."""
    record(t)
