"""One log line per task outcome, telling the truth: ``done in 3ms``, ``failed (retry 2/4 in 2.1s): …``,
``archived after 4 attempts: …``, ``archived (SkipRetry): …``, ``canceled by alice after 812ms``.

Logged once the outcome is settled with Redis (after the ack or nack), so the line says what happened, not what was
about to. Successes go out at DEBUG unless ``log_successes`` (``JOBKIT_LOG_SUCCESS=1``; ``jobkit up`` turns it on):
a line per task costs about a fifth of a no-op task's time. Failures are always WARNING, archiving ERROR.

Each line also carries ``task``, ``task_id``, ``outcome`` (``done``, ``retry``, ``failed``, ``archived``) and
``duration_ms`` as record attributes, which JSON log lines (``JOBKIT_LOG_FORMAT=json``) show as fields.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import dramatiq

from jobkit.engine.middleware.retries import Verdict

__all__ = ["TaskLog"]

log = logging.getLogger("jobkit.tasks")


class TaskLog(dramatiq.Middleware):
    def __init__(self, log_successes: bool = False) -> None:
        self.success_level = logging.INFO if log_successes else logging.DEBUG
        self.started: dict[str, float] = {}

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.started[message.message_id] = time.monotonic()

    @staticmethod
    def _fields(message: Any, outcome: str, took: float) -> dict[str, Any]:
        return {
            "task": message.actor_name,
            "task_id": message.message_id,
            "outcome": outcome,
            "duration_ms": round(took, 1),
        }

    def _took_ms(self, message: Any) -> float:
        started = self.started.pop(message.message_id, None)
        return (time.monotonic() - started) * 1000 if started is not None else 0.0

    def after_ack(self, broker: dramatiq.Broker, message: Any) -> None:
        if getattr(message, "jobkit_deferred", False):
            self.started.pop(message.message_id, None)  # not an attempt: it waits for its limit
            return
        took = self._took_ms(message)
        verdict: Verdict | None = getattr(message, "jobkit_verdict", None)
        if message._exception is None:
            if log.isEnabledFor(self.success_level):
                log.log(
                    self.success_level, "%s %s done in %.0fms", message.actor_name, message.message_id, took,
                    extra=self._fields(message, "done", took),
                )  # fmt: skip
        elif verdict is not None and verdict.kind == "retry":
            of = f"/{verdict.of}" if verdict.of is not None else ""
            log.warning(
                "%s %s failed in %.0fms (retry %d%s in %.1fs): %s",
                message.actor_name, message.message_id, took, verdict.attempts, of,
                verdict.delay_ms / 1000, message.options.get("last_error"),
                extra=self._fields(message, "retry", took),
            )  # fmt: skip
        else:  # a failure some other middleware handled (e.g. Dramatiq's own Retries)
            log.warning(
                "%s %s failed in %.0fms: %s", message.actor_name, message.message_id, took, message._exception,
                extra=self._fields(message, "failed", took),
            )  # fmt: skip

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        took = self._took_ms(message)
        verdict: Verdict | None = getattr(message, "jobkit_verdict", None)
        error = message.options.get("last_error") or message._exception
        if verdict is not None and verdict.kind == "canceled":  # asked for: not an error
            log.warning(
                "%s %s %s after %.0fms", message.actor_name, message.message_id, error, took,
                extra=self._fields(message, "canceled", took),
            )  # fmt: skip
            return
        if verdict is not None and verdict.kind == "permanent":
            how = f"archived ({verdict.reason})"
        elif verdict is not None:
            how = f"archived after {verdict.attempts} attempt{'s' if verdict.attempts != 1 else ''}"
        else:
            how = "archived"
        log.error(
            "%s %s %s in %.0fms: %s", message.actor_name, message.message_id, how, took, error,
            extra=self._fields(message, "archived", took),
        )  # fmt: skip

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.started.pop(message.message_id, None)
