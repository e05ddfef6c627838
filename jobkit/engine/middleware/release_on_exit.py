"""A worker leaving hands back what it will not run."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
from collections import defaultdict
from typing import Any

import dramatiq
from dramatiq.common import iter_queue

from jobkit.engine.broker import JobkitBroker

__all__ = ["HARD_STOP_EXIT_CODE", "ReleaseOnExit"]

log = logging.getLogger("jobkit")

#: Exit code of a worker process stopped by a second signal (Dramatiq's RET_KILLED).
HARD_STOP_EXIT_CODE = 1


class ReleaseOnExit(dramatiq.Middleware):
    """A worker leaving hands back what it will not run. On SIGTERM, prefetched tasks go back at once, so other
    workers can start them while the running ones finish. Whatever is still held after a graceful stop whose
    timeout ran out, on a second SIGTERM (Dramatiq's hard stop, which skips atexit in its worker processes), or at
    interpreter exit goes back too."""

    def __init__(self, broker: JobkitBroker) -> None:
        self.broker = broker

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        waiting: dict[str, list[Any]] = defaultdict(list)
        for item in iter_queue(worker.work_queue):
            waiting[item.message.queue_name].append(item.message)
            worker.work_queue.task_done()
        for queue_name, messages in waiting.items():
            try:
                worker.consumers[queue_name].requeue_messages(messages)
            except Exception as exc:
                log.warning("could not hand back %d prefetched task(s) (%s)", len(messages), exc)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        atexit.register(self.release)
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        signals = 0

        def on_sigterm(signum: int, frame: Any) -> None:
            nonlocal signals
            signals += 1
            if signals == 1:
                if callable(previous):
                    previous(signum, frame)
                return
            # Hard stop. Exit right here: Dramatiq's own exit path waits forever on its AsyncIO loop thread.
            self.release()
            log.warning("stopped at once; unfinished tasks were handed back")
            logging.shutdown()
            os._exit(HARD_STOP_EXIT_CODE)

        signal.signal(signal.SIGTERM, on_sigterm)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        atexit.unregister(self.release)
        self.release()

    def release(self) -> None:
        try:
            released = self.broker.release()
        except Exception as exc:  # Redis gone: the others recover the tasks once the heartbeat times out
            log.warning("could not hand back unfinished tasks (%s); other workers will recover them", exc)
            return
        if released:
            log.warning("handed %d unfinished task(s) back to their queues", released)
