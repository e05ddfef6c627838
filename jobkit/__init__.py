"""jobkit: background jobs declared in YAML, run by Dramatiq on Redis."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .client import Client, TaskRef, get_client, set_client
from .errors import (
    ConfigError,
    DispatchError,
    DuplicateTask,
    JobkitError,
    PayloadError,
    SkipRetry,
    UnknownQueue,
    UnknownTask,
)
from .scheduler import ScheduleError, ScheduleInfo, list_schedules, schedule_once, schedule_recurring, unschedule
from .workflows import Chain, chain, group

__all__ = [
    "Chain",
    "Client",
    "ConfigError",
    "DispatchError",
    "DuplicateTask",
    "JobkitError",
    "PayloadError",
    "ScheduleError",
    "ScheduleInfo",
    "SkipRetry",
    "TaskRef",
    "UnknownQueue",
    "UnknownTask",
    "chain",
    "dispatch",
    "get_client",
    "group",
    "list_schedules",
    "schedule_once",
    "schedule_recurring",
    "set_client",
    "unschedule",
]

__version__ = "0.1.0"


def dispatch(
    task: str,
    /,
    *,
    delay: timedelta | float | None = None,
    at: datetime | None = None,
    queue: str | None = None,
    max_retries: int | None = None,
    timeout: timedelta | float | None = None,
    **payload: Any,
) -> TaskRef:
    """Enqueue ``task`` with ``payload`` as its keyword arguments; returns its :class:`TaskRef`."""
    return get_client().dispatch(
        task, delay=delay, at=at, queue=queue, max_retries=max_retries, timeout=timeout, **payload
    )
