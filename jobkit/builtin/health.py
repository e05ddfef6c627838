"""system:* tasks."""

from __future__ import annotations

import logging
from typing import Any

from jobkit.durations import parse_duration
from jobkit.errors import DurationError, SkipRetry
from jobkit.services.client import Client, needs_client
from jobkit.services.health import run_check

__all__ = ["health_check"]

log = logging.getLogger("jobkit.health")


@needs_client()
def health_check(client: Client, latency_threshold: str = "5m") -> dict[str, Any]:
    """Redis ping, live workers, slow queues, paused queues with a growing backlog; evaluates the alert rules and
    stores the result for ``/health`` (see :mod:`jobkit.services.health`). Redis down raises, so the policy applies."""
    try:
        threshold = parse_duration(latency_threshold)
    except DurationError as exc:
        raise SkipRetry(f"latency_threshold: {exc}") from None
    result = run_check(client, threshold)
    log.info(
        "health check: %s, %d worker(s), %d slow queue(s), %d alert(s) sent",
        result["status"],
        result["workers"],
        len(result["slow_queues"]),
        len(result["alerts_fired"]),
    )
    return result
