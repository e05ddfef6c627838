"""Results, progress and cancellation of the tasks a worker runs.

- **Results**: a handler's return value is kept on the message (``jobkit_result``) when it is JSON and no larger than
  the task's ``max_payload``, with the task's sensitive fields sealed, so the completed record holds it for the
  task's ``retention``. Dramatiq's own ``Results`` middleware, where an actor asks for it, works as before.
- **Progress**: ``jobkit.progress()`` only records the value on the task's thread; the cancel listener's thread
  writes what changed to ``K.progress(queue, id)`` every half second, in one pipeline for all running tasks. The
  last value goes into the record as the task ends and the key is deleted.
- **Cancellation**: one pub/sub subscription per worker (``K.cancel``). A cancel for a task running here interrupts
  its thread (see :mod:`jobkit.engine.running`); one for a task this worker has fetched but not started yet is kept
  for a while, so the task is canceled the moment it would start.

Added last to the stack: its ``before_process_message`` runs after every other middleware's (an early cancel raised
there reaches the others' after hooks as if the handler had raised it) and its ``after_process_message`` runs first,
so the interrupt can no longer fire once the handler is over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from typing import Any

import dramatiq
import redis

from jobkit.engine.broker import JobkitBroker
from jobkit.engine.running import (
    CANCELED_AT_OPTION,
    CANCELED_OPTION,
    PROGRESS_INTERVAL_S,
    PROGRESS_OPTION,
    RESULT_OPTION,
    RESULT_PROBLEM_OPTION,
    Running,
    TaskCanceledInterrupt,
    enter,
    install_interruptible_sleep,
    leave,
)
from jobkit.engine.sealing import Sealer, redact

__all__ = ["MAX_RESULT_OPTION", "SENSITIVE_OPTION", "RunningTasks"]

log = logging.getLogger("jobkit")

#: Actor options it reads (set from jobs.yaml by the actor declarations).
SENSITIVE_OPTION = "jobkit_sensitive"
MAX_RESULT_OPTION = "jobkit_max_result"

_DEFAULT_MAX_RESULT = 1 << 20
_EARLY_TTL_S = 600.0
_EARLY_MAX = 10_000
_PROGRESS_TTL_MS = 3_600_000


class _WorkerThreadLog(logging.Filter):
    """Two lines of Dramatiq's worker threads that are not true under jobkit: "returned a value ... discarded"
    (jobkit keeps it) and "unhandled exception" for a canceled task (the task log says who canceled it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and "returned a value that is not None" in str(record.msg):
            return False
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, TaskCanceledInterrupt)


_worker_thread_log = _WorkerThreadLog()


class RunningTasks(dramatiq.Middleware):
    def __init__(self, broker: JobkitBroker, sealer: Sealer | None = None) -> None:
        logging.getLogger("dramatiq.worker.WorkerThread").addFilter(_worker_thread_log)  # once: filters are a set
        self.redis = broker.client
        self.keys = broker.keys
        self.sealer = sealer
        self.lock = threading.Lock()
        self.running: dict[str, Running] = {}
        #: Canceled before it started here: message id -> (by, forget after (monotonic)).
        self.early: dict[str, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self._workers = 0

    @property
    def actor_options(self) -> set[str]:
        return {SENSITIVE_OPTION, MAX_RESULT_OPTION}

    # -- the worker ------------------------------------------------------------------------------------------------
    # One listener per process however many workers run on this broker: the first to boot starts it, the last to
    # stop stops it.
    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        install_interruptible_sleep()
        with self.lock:
            self._workers += 1
            if self._workers > 1:
                return
            self._stop.clear()
            self._listener = threading.Thread(target=self._listen, name="jobkit-cancel", daemon=True)
            self._listener.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        with self.lock:
            self._workers -= 1
            if self._workers > 0:
                return
            self._stop.set()  # the listener ends within its half-second wait (a daemon: never holds up an exit)
            self._listener = None

    def _listen(self) -> None:
        pause = 0.1
        while not self._stop.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.keys.cancel)
                pause = 0.1
                next_flush = time.monotonic() + PROGRESS_INTERVAL_S
                while not self._stop.is_set():
                    item = pubsub.get_message(timeout=max(0.0, next_flush - time.monotonic()))
                    if item is not None and item.get("type") == "message":
                        self._on_cancel(item["data"])
                    if time.monotonic() >= next_flush:
                        next_flush = time.monotonic() + PROGRESS_INTERVAL_S
                        self._flush_progress()
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                if self._stop.is_set():
                    break
                log.warning("cancel listener lost Redis (%s); reconnecting", exc)
                self._stop.wait(pause)
                pause = min(pause * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):  # closing a broken connection
                    pubsub.close()

    def _on_cancel(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        message_id, _, by = text.partition("\t")
        with self.lock:
            running = self.running.get(message_id)
            if running is None:
                now = time.monotonic()
                if len(self.early) >= _EARLY_MAX:
                    self.early = {key: item for key, item in self.early.items() if item[1] > now}
                    while len(self.early) >= _EARLY_MAX:
                        self.early.pop(next(iter(self.early)))
                self.early[message_id] = (by, now + _EARLY_TTL_S)
                return
        running.cancel(by)

    # -- one message -----------------------------------------------------------------------------------------------
    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        running = Running(message.message_id, message.queue_name)
        with self.lock:
            self.running[message.message_id] = running
            early = self.early.pop(message.message_id, None) if self.early else None
        enter(running)
        if early is not None and early[1] > time.monotonic():
            running.canceled_by = early[0]
            raise TaskCanceledInterrupt(early[0])

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        running = self._end(message)
        if running is None:
            return
        options = message.options
        if running.canceled_by is not None and exception is not None:
            options[CANCELED_OPTION] = running.canceled_by
            options[CANCELED_AT_OPTION] = int(time.time() * 1000)
        final = running.progress
        if final is not None:
            options[PROGRESS_OPTION] = final
            if running.progress_written:
                self._forget_progress(running)
        if exception is None and result is not None:
            self._keep_result(broker, message, result)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._end(message)

    def _end(self, message: Any) -> Running | None:
        running = leave()
        with self.lock:
            self.running.pop(message.message_id, None)
        return running

    # -- results ---------------------------------------------------------------------------------------------------
    def _keep_result(self, broker: dramatiq.Broker, message: Any, result: Any) -> None:
        actor_options = broker.actors[message.actor_name].options if message.actor_name in broker.actors else {}
        limit = int(actor_options.get(MAX_RESULT_OPTION, _DEFAULT_MAX_RESULT))
        try:
            size = len(json.dumps(result, separators=(",", ":")))
        except (TypeError, ValueError) as exc:
            message.options[RESULT_PROBLEM_OPTION] = f"the handler returned a value that is not JSON ({exc})"
            return
        if size > limit:
            message.options[RESULT_PROBLEM_OPTION] = (
                f"the handler returned {size} bytes of JSON, more than the task's max_payload ({limit}); not kept"
            )
            return
        sensitive = actor_options.get(SENSITIVE_OPTION, ())
        if sensitive and isinstance(result, dict):  # sealed, or masked when no key is configured
            result = self.sealer.seal(result, sensitive) if self.sealer is not None else redact(result, sensitive)
        message.options[RESULT_OPTION] = result

    # -- progress --------------------------------------------------------------------------------------------------
    def _flush_progress(self) -> None:
        """Write what the running tasks reported since the last pass, in one round trip (the listener thread does
        this every half second, so ``jobkit.progress()`` itself never waits for Redis)."""
        with self.lock:
            running = list(self.running.values())
        pipe = self.redis.pipeline(transaction=False)
        written = 0
        for task in running:
            found = task.unwritten_progress()
            if found is not None:
                pipe.set(self.keys.progress(task.queue, task.message_id), json.dumps(found), px=_PROGRESS_TTL_MS)
                written += 1
        if written:
            try:
                pipe.execute()
            except redis.RedisError as exc:  # progress is advisory: the tasks go on
                log.warning("could not record the progress of %d task(s) (%s)", written, exc)

    def _forget_progress(self, running: Running) -> None:
        with contextlib.suppress(redis.RedisError):  # it expires by itself
            self.redis.delete(self.keys.progress(running.queue, running.message_id))
