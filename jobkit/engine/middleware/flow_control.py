"""Flow control per task, shared by every worker through Redis: ``rate_limit`` and ``concurrency``.

- ``rate_limit: N/s|m|h``: a sliding window of start times (at most N starts in *any* window of that length).
- ``concurrency: N``: a counting semaphore whose slots expire after the task's timeout (a killed worker's slot frees
  itself).

A task over a limit does not run and does not wait in a worker thread: the message goes back to Redis with a delay
(the scheduled set) and this attempt is acked as "deferred", which counts neither as processed, failed nor retried.

``unique`` is not here: its lock is a claim the message builder adds to the enqueue (:mod:`jobkit.engine.messages`),
and the broker's ack, nack or delete ends it in the same Lua step.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import dramatiq
from dramatiq import Middleware
from dramatiq.middleware import SkipMessage

from jobkit.config.model import DEFAULT_TIMEOUT
from jobkit.engine.broker import JobkitBroker

__all__ = ["CONCURRENCY_OPTION", "RATE_OPTION", "FlowControl"]

#: Actor options set from a task's ``rate_limit`` ((starts, window ms)) and ``concurrency`` (running at once).
RATE_OPTION = "jobkit_rate_limit"
CONCURRENCY_OPTION = "jobkit_concurrency"
#: Wait before a task refused by its concurrency cap tries again (jittered up to twice this).
CONCURRENCY_RETRY_MS = 100
#: A concurrency slot outlives the task's time limit by this much before it expires on its own.
SLOT_GRACE_MS = 30_000
_DEFAULT_TIME_LIMIT_MS = int(DEFAULT_TIMEOUT.total_seconds() * 1000)


class _QuietDeferrals(logging.Filter):
    """Dramatiq logs every skipped message as a warning; a deferral is routine, so it is not one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Message %s was skipped." and record.args:
            message = record.args[0] if isinstance(record.args, tuple) else None
            return not getattr(message, "jobkit_deferred", False)
        return True


class FlowControl(Middleware):
    """Rate limits and concurrency caps, checked before a task starts."""

    def __init__(self, broker: JobkitBroker) -> None:
        self.broker = broker
        self.holding: set[str] = set()  # redis message ids holding a concurrency slot in this process

    @property
    def actor_options(self) -> set[str]:
        return {RATE_OPTION, CONCURRENCY_OPTION}

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        logging.getLogger("dramatiq.worker.WorkerThread").addFilter(_QuietDeferrals())

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        actor = self.broker.actors.get(message.actor_name)
        if actor is None:
            return
        cap: int | None = actor.options.get(CONCURRENCY_OPTION)
        rate: tuple[int, int] | None = actor.options.get(RATE_OPTION)
        if cap is None and rate is None:
            return
        rid = message.options["redis_message_id"]
        task = message.actor_name
        if cap is not None:
            limit = int(message.options.get("time_limit") or actor.options.get("time_limit", _DEFAULT_TIME_LIMIT_MS))
            if not self.broker.lua.call("limits", "slot", task, cap, limit + SLOT_GRACE_MS, rid):
                self._defer(message, CONCURRENCY_RETRY_MS + random.randint(0, CONCURRENCY_RETRY_MS))
            self.holding.add(rid)
        if rate is not None:
            count, window_ms = rate
            wait = int(self.broker.lua.call("limits", "rate", task, count, window_ms, rid))
            if wait:
                self._release_slot(message)
                # Spread the waiting ones over a little time after the window frees, not all at the same instant.
                self._defer(message, wait + random.randint(0, max(1, min(window_ms // count, 1000))))

    def _defer(self, message: Any, delay_ms: int) -> None:
        self.broker.enqueue(message, delay=delay_ms)
        message.jobkit_deferred = True  # on the proxy only: the broker acks it as "deferred", the task log skips it
        raise SkipMessage("deferred by a rate limit or concurrency cap")

    def _release_slot(self, message: Any) -> None:
        rid = message.options.get("redis_message_id")
        if rid in self.holding:
            self.holding.discard(rid)
            self.broker.lua.call("limits", "release", message.actor_name, rid)

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        self._release_slot(message)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._release_slot(message)
