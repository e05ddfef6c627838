"""Cross-queue priority and start markers: the worker's threads take work from the broker's
:class:`~jobkit.engine.work_queue.WorkQueue`, and each start is recorded so ``active`` counts running tasks only."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq import Middleware

from jobkit.engine.broker import JobkitBroker

__all__ = ["QueuePriority"]


class QueuePriority(Middleware):
    """Installs the broker's work queue in the worker (weighted or strict priority across queues) and marks each
    message as started; the marker rides along with the next call to Redis."""

    def __init__(self, broker: JobkitBroker) -> None:
        self.broker = broker

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self.broker.work_queue is not None:
            self.broker.work_queue.reset()
            worker.work_queue = self.broker.work_queue

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.broker.mark_started(message.queue_name, message.options["redis_message_id"])
