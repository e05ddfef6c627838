"""system:* tasks."""

from __future__ import annotations

import logging
from typing import Any

from jobkit.client import get_client
from jobkit.durations import DurationError, parse_duration
from jobkit.errors import SkipRetry
from jobkit.health import run_check

__all__ = ["health_check"]

log = logging.getLogger("jobkit.health")


def health_check(latency_threshold: str = "5m") -> dict[str, Any]:
    """Redis ping, live workers, slow queues, paused queues with a growing backlog; evaluates the alert rules and
    stores the result for ``/health`` (see :mod:`jobkit.health`). Redis down raises, so the policy applies."""
    try:
        threshold = parse_duration(latency_threshold)
    except DurationError as exc:
        raise SkipRetry(f"latency_threshold: {exc}") from None
    result = run_check(get_client(), threshold)
    log.info(
        "health check: %s, %d worker(s), %d slow queue(s), %d alert(s) sent",
        result["status"],
        result["workers"],
        len(result["slow_queues"]),
        len(result["alerts_fired"]),
    )
    return result
