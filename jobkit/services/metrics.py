"""Prometheus text exposition of the queue stats, and the live-worker count from the workers' heartbeats."""

from __future__ import annotations

from collections.abc import Iterable

from jobkit.services.client import Client
from jobkit.services.queues import QueueStats
from jobkit.services.system import System

__all__ = ["CONTENT_TYPE", "live_workers", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_GAUGES = (
    ("pending", "Tasks waiting to start."),
    ("active", "Tasks running now."),
    ("scheduled", "Tasks waiting for their delay or time."),
    ("retry", "Failed attempts waiting to retry."),
    ("archived", "Tasks in the dead-letter set."),
    ("completed", "Completed tasks still within their retention."),
    ("size", "pending + active + scheduled + retry."),
)


def live_workers(client: Client) -> int:
    """Worker processes whose last heartbeat is younger than the dead-worker timeout."""
    return System(client).live_count()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(stats: Iterable[QueueStats], workers: int) -> str:
    """The metrics page: one gauge family per state, latency, paused, and processed/failed counters."""
    stats = list(stats)
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, values: Iterable[tuple[str, float | int]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f'{name}{{queue="{_label(queue)}"}} {value}' for queue, value in values)

    for field, help_text in _GAUGES:
        family(f"jobkit_queue_{field}", "gauge", help_text, ((s.queue, getattr(s, field)) for s in stats))
    family(
        "jobkit_queue_latency_seconds",
        "gauge",
        "Age of the oldest task waiting in the queue.",
        ((s.queue, s.latency_ms / 1000) for s in stats),
    )
    family("jobkit_queue_paused", "gauge", "1 when the queue is paused.", ((s.queue, int(s.paused)) for s in stats))
    family(
        "jobkit_tasks_processed_total",
        "counter",
        "Attempts finished, succeeded or failed.",
        ((s.queue, s.processed_total) for s in stats),
    )
    family("jobkit_tasks_failed_total", "counter", "Attempts failed.", ((s.queue, s.failed_total) for s in stats))
    lines.append("# HELP jobkit_workers Worker processes with a live heartbeat.")
    lines.append("# TYPE jobkit_workers gauge")
    lines.append(f"jobkit_workers {workers}")
    return "\n".join(lines) + "\n"
