"""The health check behind ``system:health_check``, and its last result for ``/health`` and the dashboard.

A check pings Redis, counts live workers (heartbeats, via :class:`~jobkit.services.system.System`), lists queues whose
latency is over their threshold and paused queues whose backlog grew since the previous check, records a sample of
the queue counters for the alert rules and evaluates them. The result is kept as JSON in ``K.health`` for
:data:`RESULT_TTL`; :func:`latest` reads it back.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from jobkit.services.alerts import Alerts
from jobkit.services.client import Client
from jobkit.services.queues import Queues
from jobkit.services.system import System

__all__ = ["DEFAULT_LATENCY_THRESHOLD", "RESULT_TTL", "latest", "run_check"]

DEFAULT_LATENCY_THRESHOLD = timedelta(minutes=5)
RESULT_TTL = timedelta(hours=3)
"""The shipped schedule checks hourly; a result older than this is gone, so a stopped scheduler shows."""


def run_check(client: Client, latency_threshold: timedelta = DEFAULT_LATENCY_THRESHOLD) -> dict[str, Any]:
    """Check now, evaluate the alert rules, store the result and return it.

    A queue's latency threshold is the lowest ``over`` of the ``when: latency`` rules watching it, else
    ``latency_threshold``.
    """
    redis = client.redis
    alerts = Alerts(client)
    started = time.perf_counter()
    redis.ping()
    ping_ms = (time.perf_counter() - started) * 1000
    workers = System(client).workers()
    now_ms = int(time.time() * 1000)
    stats = Queues(client).all_stats()
    previous = alerts.baseline(timedelta(), now_ms) or {}
    thresholds = _latency_thresholds(client, latency_threshold)
    slow = [
        {"queue": s.queue, "latency_ms": s.latency_ms, "threshold_ms": thresholds[s.queue]}
        for s in stats
        if s.latency_ms > thresholds[s.queue]
    ]
    stalled = [
        {"queue": s.queue, "size": s.size, "previous_size": previous[s.queue][3]}
        for s in stats
        if s.paused and s.queue in previous and s.size > previous[s.queue][3]
    ]
    fired = alerts.evaluate(stats, now_ms)
    alerts.record_sample(stats, now_ms)
    result: dict[str, Any] = {
        "status": "ok" if workers and not slow and not stalled else "degraded",
        "checked_at": datetime.fromtimestamp(now_ms / 1000, tz=UTC).isoformat(timespec="seconds"),
        "redis": {"status": "ok", "ping_ms": round(ping_ms, 2)},
        "workers": len(workers),
        "slow_queues": slow,
        "paused_queues_growing": stalled,
        "alerts_fired": fired,
    }
    redis.set(client.keys.health, json.dumps(result), px=int(RESULT_TTL.total_seconds() * 1000))
    return result


def latest(client: Client) -> dict[str, Any] | None:
    """The last stored health-check result, or None when no check ran within :data:`RESULT_TTL`."""
    raw = client.redis.get(client.keys.health)
    if raw is None:
        return None
    found: dict[str, Any] = json.loads(raw)
    return found


def _latency_thresholds(client: Client, default: timedelta) -> dict[str, int]:
    thresholds = dict.fromkeys(client.project.queues, int(default.total_seconds() * 1000))
    for rule in client.project.alerts.values():
        if rule.when == "latency":
            for queue in rule.queues or tuple(thresholds):
                thresholds[queue] = min(thresholds[queue], int(rule.over * 1000))
    return thresholds
