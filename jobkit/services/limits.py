"""The limits of a task and how much of them is in use now, for the API and the dashboard."""

from __future__ import annotations

from typing import Any

from jobkit.config.model import TaskSpec
from jobkit.services.client import Client

__all__ = ["describe_limits"]


def describe_limits(client: Client, spec: TaskSpec) -> dict[str, Any]:
    """``unique`` / ``rate_limit`` / ``concurrency`` of ``spec``, tasks running under its cap and starts in its
    current rate window (None where the task sets no such limit)."""
    window_ms = int(spec.rate_limit.per.total_seconds() * 1000) if spec.rate_limit is not None else 0
    running, starts = client.broker.lua.call("limits", "usage", spec.name, window_ms)
    return {
        "task": spec.name,
        "unique": int(spec.unique.total_seconds()) if spec.unique is not None else None,
        "unique_key": spec.unique_key,
        "rate_limit": str(spec.rate_limit) if spec.rate_limit is not None else None,
        "concurrency": spec.concurrency,
        "running": int(running) if spec.concurrency is not None else None,
        "starts_in_window": int(starts) if spec.rate_limit is not None else None,
    }
