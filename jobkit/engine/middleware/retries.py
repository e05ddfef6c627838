"""Retry policy middleware: exponential backoff with jitter inside ``backoff.min``..``backoff.max``, ``retry_on`` /
``skip_retry_on``, :class:`~jobkit.SkipRetry`, a server's ``Retry-After`` (:class:`~jobkit.errors.MailUnavailable`)
as the earliest next attempt, and the final error kept on the archived message.

Replaces Dramatiq's ``Retries`` (which keeps the previous attempt's traceback on a dead message and can jitter
below the minimum).
"""

from __future__ import annotations

import random
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from dramatiq import Broker, Middleware
from dramatiq.errors import Retry

from jobkit.config.model import DEFAULT_RETRY
from jobkit.errors import MailUnavailable, SkipRetry

__all__ = ["Retries", "Verdict", "backoff_delay"]

_MAX_ERROR_CHARS = 2000
_DEFAULT_MIN_BACKOFF_MS = int(DEFAULT_RETRY.backoff_min.total_seconds() * 1000)
_DEFAULT_MAX_BACKOFF_MS = int(DEFAULT_RETRY.backoff_max.total_seconds() * 1000)


@dataclass(frozen=True)
class Verdict:
    """What became of a failed attempt, left on the message (``message.jobkit_verdict``) for the task log."""

    kind: Literal["retry", "permanent", "exhausted"]
    reason: str = ""
    """For ``permanent``: the exception that archived it (``SkipRetry``, or one listed in ``skip_retry_on``)."""
    attempts: int = 0
    """Attempts made so far."""
    of: int = 0
    """For ``retry``: the most retries the task may have (``max_retries``)."""
    delay_ms: int = 0
    """For ``retry``: how long until the next attempt."""


def backoff_delay(retry: int, low: timedelta, high: timedelta, rng: random.Random | None = None) -> timedelta:
    """The wait before retry number ``retry`` (1-based): ``low * 2**(retry-1)`` jittered up to twice that,
    always within ``[low, high]``."""
    draw = (rng or random).random()
    base = low * 2 ** min(retry - 1, 40)
    if base >= high:
        lower, upper = max(low, high / 2), high
    else:
        lower, upper = base, min(base * 2, high)
    return lower + (upper - lower) * draw


class Retries(Middleware):
    """Retries a failed attempt after a jittered backoff, or archives the task (``message.fail()``) when its retries
    are spent or the error is permanent. A message of an actor that sets no policy gets the model's defaults."""

    @property
    def actor_options(self) -> set[str]:
        return {"max_retries", "min_backoff", "max_backoff", "retry_on", "skip_retry_on", "throws", "retention"}

    def after_process_message(
        self, broker: Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        if exception is None:
            return
        actor = broker.get_actor(message.actor_name)
        options = message.options
        options["last_error"] = f"{type(exception).__name__}: {exception}"[:_MAX_ERROR_CHARS]
        options["last_failed_at"] = int(time.time() * 1000)
        options["traceback"] = "".join(traceback.format_exception(exception, limit=30))[-8 * _MAX_ERROR_CHARS :]

        if self._permanent(exception, actor.options):
            message.jobkit_verdict = Verdict("permanent", type(exception).__name__)
            message.fail()
            return
        retries = int(options.get("retries", 0))
        max_retries = int(options.get("max_retries", actor.options.get("max_retries", DEFAULT_RETRY.max_retries)))
        if retries >= max_retries:
            message.jobkit_verdict = Verdict("exhausted", attempts=retries + 1)
            message.fail()
            return
        options["retries"] = retries + 1
        options["jobkit_retry"] = True
        if isinstance(exception, Retry) and exception.delay is not None:
            delay_ms = int(exception.delay)
        else:
            low = timedelta(milliseconds=actor.options.get("min_backoff", _DEFAULT_MIN_BACKOFF_MS))
            high = timedelta(milliseconds=actor.options.get("max_backoff", _DEFAULT_MAX_BACKOFF_MS))
            delay_ms = int(backoff_delay(retries + 1, low, high).total_seconds() * 1000)
        if isinstance(exception, MailUnavailable) and exception.retry_after is not None:
            # The server said when to come back (Retry-After): never sooner, even when the backoff is shorter.
            delay_ms = max(delay_ms, int(exception.retry_after.total_seconds() * 1000))
        delay_ms = max(delay_ms, 1)
        message.jobkit_verdict = Verdict("retry", attempts=retries + 1, of=max_retries, delay_ms=delay_ms)
        broker.enqueue(message, delay=delay_ms)

    @staticmethod
    def _permanent(exception: BaseException, options: dict[str, Any]) -> bool:
        if isinstance(exception, SkipRetry):
            return True
        skip: tuple[type[BaseException], ...] = options.get("skip_retry_on", ())
        if skip and isinstance(exception, skip):
            return True
        only: tuple[type[BaseException], ...] = options.get("retry_on", ())
        return bool(only) and not isinstance(exception, (*only, Retry))
