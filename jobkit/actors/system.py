"""system:* tasks."""

from __future__ import annotations

import logging
from typing import Any

from jobkit.client import get_client

__all__ = ["health_check"]

log = logging.getLogger("jobkit.health")


def health_check() -> dict[str, Any]:
    """Ping Redis and count live workers (from their heartbeats); logs and returns the result."""
    client = get_client()
    redis = client.broker.client
    latency_start = redis.time()
    redis.ping()
    workers = redis.zcard(f"{client.settings.namespace}:__heartbeats__")
    result = {"redis": "ok", "workers": int(workers), "redis_time": latency_start[0]}
    log.info("health check: %s", result)
    return result
