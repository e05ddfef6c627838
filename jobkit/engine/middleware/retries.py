"""The retry middleware: Dramatiq's ``Retries``, option for option, with jobkit's policy as YAML tasks' options.

It takes Dramatiq's place in the stack and honours everything Dramatiq documents for it, per actor and per message
(``send_with_options``): ``max_retries``, ``min_backoff``, ``max_backoff``, ``retry_when(retries, exception)``,
``throws`` and ``on_retry_exhausted``, with Dramatiq's defaults (20 retries, 15 s to 7 days) for an actor that sets
none. Like Dramatiq's, it counts every failure that is not in ``throws`` in ``options["retries"]`` (the final one
too) and sets ``traceback`` and ``requeue_timestamp``, and logs ``Aborting message``, ``Retries exceeded`` and
``Retrying message`` lines.

A task of jobs.yaml is an actor whose options carry its policy (see :mod:`jobkit.engine.actors`): ``max_retries``
and ``backoff`` as Dramatiq's options, ``SkipRetry`` and ``skip_retry_on`` in ``throws``, and ``retry_on`` (only
those exceptions retry), a jobkit option any actor may set. What differs from Dramatiq's own middleware, for every
actor: a retry waits in Redis (the broker's retry set, any length, surviving restarts); the wait is always inside
``[min_backoff, max_backoff]`` (Dramatiq's jitter can fall below the minimum); and :class:`~jobkit.SkipRetry`, which
Dramatiq does not know, never retries (a plain actor that raises it asks for exactly that).

What jobkit adds for itself: a server's ``Retry-After`` (:class:`~jobkit.errors.MailUnavailable`) as the earliest
next attempt; ``last_error`` and ``last_failed_at`` (the inspection API shows them), and a
:class:`Verdict` on the message proxy for the task log (never stored).
"""

from __future__ import annotations

import logging
import random
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from dramatiq import Broker, Middleware
from dramatiq.errors import Retry

from jobkit.config.model import DRAMATIQ_RETRY
from jobkit.engine.broker import JobkitBroker
from jobkit.engine.messages import Outgoing
from jobkit.engine.running import CANCELED_OPTION
from jobkit.errors import MailUnavailable, SkipRetry

__all__ = ["Retries", "Verdict", "backoff_delay"]

_MAX_ERROR_CHARS = 2000


def _ms(value: timedelta) -> int:
    return int(value.total_seconds() * 1000)


@dataclass(frozen=True)
class Verdict:
    """What became of a failed attempt, left on the message proxy (``message.jobkit_verdict``) for the task log."""

    kind: Literal["retry", "permanent", "exhausted", "canceled"]
    reason: str = ""
    """For ``permanent``: the exception that archived it (one in ``throws``, or one ``retry_on`` does not list)."""
    attempts: int = 0
    """Attempts made so far."""
    of: int | None = None
    """For ``retry``: the most retries the task may have (``max_retries``; None when unbounded)."""
    delay_ms: int = 0
    """For ``retry``: how long until the next attempt."""


def backoff_delay(retry: int, low: timedelta, high: timedelta, rng: random.Random | None = None) -> timedelta:
    """The wait before retry number ``retry`` (1-based): ``low * 2**(retry-1)`` jittered up to twice that, always
    within ``[low, high]`` (``low`` above ``high`` counts as ``high``)."""
    draw = (rng or random).random()
    low = min(low, high)
    base = low * 2 ** min(retry - 1, 40)
    if base >= high:
        lower, upper = max(low, high / 2), high
    else:
        lower, upper = base, min(base * 2, high)
    return lower + (upper - lower) * draw


class Retries(Middleware):
    """Retries a failed attempt after a jittered backoff, or fails the message (the broker archives it) when the
    exception is in ``throws`` or not in ``retry_on``, or when the retries are spent (``max_retries``, or
    ``retry_when`` says no; ``on_retry_exhausted`` then gets a message). The constructor's arguments are the defaults
    of an actor that sets none, Dramatiq's unless given."""

    def __init__(
        self,
        *,
        max_retries: int | None = DRAMATIQ_RETRY.max_retries,
        min_backoff: int = _ms(DRAMATIQ_RETRY.backoff_min),
        max_backoff: int = _ms(DRAMATIQ_RETRY.backoff_max),
        retry_when: Any = None,
        rng: random.Random | None = None,
    ) -> None:
        self.logger = logging.getLogger(f"{__name__}.{type(self).__name__}")  # named as Dramatiq names its loggers
        self.max_retries = max_retries
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.retry_when = retry_when
        self.rng = rng

    @property
    def actor_options(self) -> set[str]:
        # Dramatiq's, jobkit's retry_on / skip_retry_on, and the broker's retention of completed tasks.
        dramatiq = {"max_retries", "min_backoff", "max_backoff", "retry_when", "throws", "on_retry_exhausted"}
        return dramatiq | {"retry_on", "skip_retry_on", "retention", "retention_max"}

    def after_process_message(
        self, broker: Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        if exception is None:
            return
        actor = broker.get_actor(message.actor_name)
        options = message.options
        now = int(time.time() * 1000)
        options["last_error"] = f"{type(exception).__name__}: {exception}"[:_MAX_ERROR_CHARS]
        options["last_failed_at"] = now
        if options.get(CANCELED_OPTION) is not None:  # set by RunningTasks, whose after hook runs before this one
            options["last_error"] = f"canceled by {options[CANCELED_OPTION]}"
            message.jobkit_verdict = Verdict("canceled")
            message.fail()
            return

        throws = options.get("throws") or actor.options.get("throws")
        only: tuple[type[BaseException], ...] = actor.options.get("retry_on") or ()
        if (
            isinstance(exception, SkipRetry)
            or (throws and isinstance(exception, throws))
            or (only and not isinstance(exception, (*only, Retry)))
        ):
            self.logger.info("Aborting message %r.", message.message_id)
            message.jobkit_verdict = Verdict("permanent", type(exception).__name__)
            message.fail()
            return

        retries = options.setdefault("retries", 0)
        options["retries"] += 1
        options["traceback"] = "".join(traceback.format_exception(exception, limit=30))
        options["requeue_timestamp"] = now

        max_retries = options.get("max_retries", actor.options.get("max_retries", self.max_retries))
        retry_when = actor.options.get("retry_when", self.retry_when)
        if (retry_when is not None and not retry_when(retries, exception)) or (
            retry_when is None and max_retries is not None and retries >= max_retries
        ):
            self.logger.warning("Retries exceeded for message %r.", message.message_id)
            message.jobkit_verdict = Verdict("exhausted", attempts=retries + 1)
            message.fail()
            target = options.get("on_retry_exhausted") or actor.options.get("on_retry_exhausted")
            if target:
                broker.get_actor(target).send(message.asdict(), {"retries": retries, "max_retries": max_retries})
            return

        if isinstance(exception, Retry) and exception.delay is not None:
            delay_ms = int(exception.delay)
        else:
            low = options.get("min_backoff", actor.options.get("min_backoff", self.min_backoff))
            high = options.get("max_backoff", actor.options.get("max_backoff", self.max_backoff))
            wait = backoff_delay(retries + 1, timedelta(milliseconds=low), timedelta(milliseconds=high), self.rng)
            delay_ms = int(wait.total_seconds() * 1000)
        if isinstance(exception, MailUnavailable) and exception.retry_after is not None:
            # The server said when to come back (Retry-After): never sooner, even when the backoff is shorter.
            delay_ms = max(delay_ms, int(exception.retry_after.total_seconds() * 1000))
        delay_ms = max(delay_ms, 1)
        self.logger.info("Retrying message %r in %d milliseconds.", message.message_id, delay_ms)
        message.jobkit_verdict = Verdict("retry", attempts=retries + 1, of=max_retries, delay_ms=delay_ms)
        if isinstance(broker, JobkitBroker):
            broker.send(Outgoing(message, delay_ms, retry=True))  # into the retry set, not the scheduled one
        else:
            broker.enqueue(message, delay=delay_ms)
