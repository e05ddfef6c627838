"""What jobs.yaml declares, as frozen dataclasses. No I/O here: the loader builds these, everything else reads them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

__all__ = [
    "ExportSpec",
    "Priority",
    "Project",
    "QueueSpec",
    "RetryPolicy",
    "ScheduleFile",
    "ScheduleSpec",
    "TaskSpec",
    "WorkerSpec",
]

Priority = Literal["weighted", "strict"]


@dataclass(frozen=True)
class QueueSpec:
    name: str
    """Matches ``[a-zA-Z_][a-zA-Z0-9_-]*``."""
    weight: int = 1
    """Share of the workers' attention under ``priority: weighted``; order under ``strict``."""


@dataclass(frozen=True)
class WorkerSpec:
    processes: int = 2
    """Worker processes started by ``jobkit worker`` and ``jobkit up``."""
    threads: int = 8
    """Worker threads per process."""
    shutdown_timeout: timedelta = timedelta(minutes=1)
    """How long SIGTERM waits for running tasks before unfinished ones are handed back to Redis."""


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    """Retries after the first attempt; the task runs at most ``max_retries + 1`` times."""
    backoff_min: timedelta = timedelta(seconds=1)
    """Delay before the first retry (before jitter)."""
    backoff_max: timedelta = timedelta(hours=1)
    """No retry waits longer than this."""
    retry_on: tuple[str, ...] = ()
    """If set, only these exceptions retry; any other archives the task at once."""
    skip_retry_on: tuple[str, ...] = ()
    """These exceptions archive the task at once (as ``jobkit.SkipRetry`` always does)."""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    """The seed's ``group:action`` string, also the Dramatiq actor name."""
    handler: str
    """``module:function`` imported by the worker; the payload arrives as keyword arguments."""
    queue: str
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: timedelta = timedelta(minutes=10)
    """A running attempt is interrupted after this long and counts as a failure."""
    retention: timedelta = timedelta(hours=24)
    """How long a completed task stays inspectable (0 = not kept)."""
    api: bool = False
    """May be triggered through ``POST /api/jobs/trigger/{task}``."""


@dataclass(frozen=True)
class ExportSpec:
    name: str
    sql: str
    """A read-only query with ``:named`` parameters; never taken from a request."""


@dataclass(frozen=True)
class Project:
    source: str
    """The file this project was loaded from, as the user named it."""
    queues: Mapping[str, QueueSpec]
    tasks: Mapping[str, TaskSpec]
    priority: Priority = "weighted"
    worker: WorkerSpec = field(default_factory=WorkerSpec)
    exports: Mapping[str, ExportSpec] = field(default_factory=dict)
    default_queue: str = "default"

    def task(self, name: str) -> TaskSpec:
        return self.tasks[name]

    def queue_names(self) -> list[str]:
        """Queues from the heaviest to the lightest, ties in file order."""
        return [q.name for q in sorted(self.queues.values(), key=lambda q: -q.weight)]


@dataclass(frozen=True)
class ScheduleSpec:
    id: str
    """Stable id: the entry's name in schedules.yaml, or ``api-<hex>`` for one created at run time."""
    task: str
    """The task to enqueue (declared in jobs.yaml)."""
    spec: str
    """When: ``0 2 * * MON``, ``@daily 3:00``, ``@every 90m`` (``daily_at`` and friends are stored as cron)."""
    payload: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments for the handler."""
    queue: str | None = None
    """Queue instead of the task's own."""
    timezone: str = "UTC"
    """IANA zone the cron fields are read in (never the host's local zone)."""
    source: str = "api"
    """``yaml:<name>``, ``periodiq:<actor>`` or ``api``."""


@dataclass(frozen=True)
class ScheduleFile:
    source: str
    """The file the entries were loaded from, as the user named it."""
    timezone: str = "UTC"
    schedules: Mapping[str, ScheduleSpec] = field(default_factory=dict)
