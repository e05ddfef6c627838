"""PID 1 of a test "host" (its own network, PID and hostname namespaces, made by :mod:`tests.support.hosts`):
``python -m tests.support.host_init HOSTNAME LOGDIR``.

It names the host, starts a jobkit worker (``dramatiq jobkit.actors``), waits until the worker's process is ready,
then starts a ``jobkit scheduler``, and reaps children until it is killed. Starting the two in that order gives the
worker the same PIDs on every host, which is what the tests need to show that equal PIDs do not collide.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def main(hostname: str, logs: Path) -> None:
    socket.sethostname(hostname)
    jobkit = str(Path(sys.executable).parent / "jobkit")
    worker_log = logs / f"{hostname}.worker.log"
    worker = [sys.executable, "-m", "dramatiq", "jobkit.actors", "--processes", "1", "--threads", "4"]
    subprocess.Popen(worker, stdout=worker_log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "is ready for action" not in worker_log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise SystemExit(f"{hostname}: the worker did not start")
        time.sleep(0.05)
    scheduler_log = logs / f"{hostname}.scheduler.log"
    subprocess.Popen([jobkit, "scheduler"], stdout=scheduler_log.open("w"), stderr=subprocess.STDOUT)
    (logs / f"{hostname}.ready").write_text(str(os.getpid()))
    while True:  # PID 1 reaps every orphan of its namespace
        try:
            os.wait()
        except ChildProcessError:
            time.sleep(0.5)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
