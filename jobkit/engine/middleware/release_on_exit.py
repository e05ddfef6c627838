"""A worker leaving hands back what it will not run, without changing how Dramatiq stops.

No signal handler: Dramatiq's own stay in charge (with ``dramatiq``'s CLI, and so ``jobkit worker`` and ``jobkit
up``, the first SIGTERM stops gracefully within ``--worker-shutdown-timeout`` and a second one kills the worker
process with exit code 1; a ``dramatiq.Worker`` in an application's main thread ends on SIGTERM as with any broker).
What jobkit adds happens on the way out, whichever way that is:

- graceful stop: the prefetched tasks go back to Redis as soon as the stop begins, so other workers can start them
  while the running ones finish; whatever is still held when the worker has stopped (a timeout ran out) goes too;
- a second SIGTERM, or the interpreter exiting with the worker still running: everything the process holds goes back
  to the front of its queue from a :mod:`multiprocessing` exit finalizer. That runs in Dramatiq's worker processes
  (which leave through ``multiprocessing``, skipping ``atexit``) and, through ``multiprocessing``'s own ``atexit``
  hook, in any other process.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from multiprocessing.util import Finalize
from typing import Any

import dramatiq
from dramatiq.common import iter_queue

from jobkit.engine.broker import JobkitBroker

__all__ = ["ReleaseOnExit"]

log = logging.getLogger("jobkit")

#: Before multiprocessing's other exit finalizers (higher runs first): Redis must still be reachable.
_EXIT_PRIORITY = 100


class ReleaseOnExit(dramatiq.Middleware):
    """Hands prefetched tasks back when a worker begins to stop, and everything still held when it has stopped or
    when the process exits without stopping it."""

    def __init__(self, broker: JobkitBroker) -> None:
        self.broker = broker
        self._at_exit: Finalize | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self._at_exit is None:
            self._at_exit = Finalize(None, self.release, exitpriority=_EXIT_PRIORITY)

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

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self._at_exit is not None:
            self._at_exit.cancel()
            self._at_exit = None
        self.release()

    def release(self) -> None:
        try:
            released = self.broker.release()
        except Exception as exc:  # Redis gone: the others recover the tasks once the heartbeat times out
            log.warning("could not hand back unfinished tasks (%s); other workers will recover them", exc)
            return
        if released:
            log.warning("handed %d unfinished task(s) back to their queues", released)
