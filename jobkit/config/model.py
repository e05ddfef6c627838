"""What jobs.yaml and schedules.yaml declare, as frozen dataclasses. No I/O here: the loaders build these, everything
else reads them.

Each default is stated once, here (the constants below and the dataclass fields); the loaders, the broker and the
middleware derive theirs from these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

__all__ = [
    "DEFAULT_COOLDOWN",
    "DEFAULT_DURABILITY",
    "DEFAULT_EXPORT_TIMEOUT",
    "DEFAULT_MAX_PAYLOAD",
    "DEFAULT_QUEUE",
    "DEFAULT_RETENTION",
    "DEFAULT_RETENTION_MAX",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUT",
    "DRAMATIQ_RETRY",
    "REPLICATION_TIMEOUT",
    "AlertChannel",
    "AlertKind",
    "AlertRule",
    "Durability",
    "ExportSpec",
    "PriorityMode",
    "Project",
    "QueueSpec",
    "RateLimit",
    "RetryPolicy",
    "ScheduleFile",
    "ScheduleSpec",
    "TaskSpec",
    "WorkerSpec",
    "WorkflowSpec",
    "WorkflowStep",
]

PriorityMode = Literal["weighted", "strict"]
Durability = Literal["async", "replicated"]

DEFAULT_QUEUE = "default"
"""The queue of a task that names none, when ``defaults.queue`` is not set either."""
DEFAULT_TIMEOUT = timedelta(minutes=10)
"""A running attempt is interrupted after this long."""
DEFAULT_RETENTION = timedelta(hours=24)
"""How long a completed task stays inspectable."""
DEFAULT_RETENTION_MAX = 10_000
"""At most this many completed tasks are kept per queue (the newest), however short their retention."""
DEFAULT_MAX_PAYLOAD = 1024 * 1024
"""The largest payload a task takes, in bytes of JSON (1 MiB), unless jobs.yaml sets ``max_payload``."""
DEFAULT_COOLDOWN = timedelta(minutes=10)
"""After an alert, its rule stays silent this long unless it sets ``cooldown``."""
DEFAULT_DURABILITY: Durability = "async"
"""A dispatch returns once the primary has the task (Redis replicates asynchronously)."""
REPLICATION_TIMEOUT = timedelta(seconds=2)
"""``durability: replicated``: how long a dispatch waits for a replica's acknowledgement (``WAIT``) before it fails."""
DEFAULT_EXPORT_TIMEOUT = timedelta(minutes=5)
"""An export's query is cancelled by the database after this long unless it sets ``timeout``."""


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


DEFAULT_RETRY = RetryPolicy()
"""The retry policy of a jobs.yaml task that sets none."""
DRAMATIQ_RETRY = RetryPolicy(max_retries=20, backoff_min=timedelta(seconds=15), backoff_max=timedelta(days=7))
"""Dramatiq's own defaults (its ``Retries`` middleware), which a plain ``@dramatiq.actor`` gets when it sets no retry
option: 20 retries, backoff from 15 s to 7 days."""


# -- flow control ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RateLimit:
    """``rate_limit: 100/m``: at most ``count`` starts in any window of ``per``, shared by every worker."""

    count: int
    per: timedelta

    def __str__(self) -> str:
        unit = {1: "s", 60: "m", 3600: "h"}.get(int(self.per.total_seconds()), "s")
        return f"{self.count}/{unit}"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    """The seed's ``group:action`` string, also the Dramatiq actor name."""
    handler: str
    """``module:function`` imported by the worker; the payload arrives as keyword arguments."""
    queue: str
    retry: RetryPolicy = DEFAULT_RETRY
    timeout: timedelta = DEFAULT_TIMEOUT
    """A running attempt is interrupted after this long and counts as a failure."""
    retention: timedelta = DEFAULT_RETENTION
    """How long a completed task stays inspectable (0 = not kept)."""
    retention_max: int = DEFAULT_RETENTION_MAX
    """At most this many completed tasks are kept in the task's queue: each completion trims the oldest beyond it."""
    api: bool = False
    """May be triggered through ``POST /api/jobs/trigger/{task}``."""
    unique: timedelta | None = None
    """A second dispatch with the same key inside this time is refused (the lock ends when the task finishes)."""
    unique_key: str | None = None
    """Template of the uniqueness key (``"{{ user_id }}"``); default: the whole payload."""
    rate_limit: RateLimit | None = None
    """At most so many starts per second, minute or hour across all workers; others wait their turn."""
    concurrency: int | None = None
    """At most this many running at once across all workers."""
    sensitive: tuple[str, ...] = ()
    """Payload paths (``token``, ``headers.authorization``, ``url.query``) sealed at rest and shown as "***"."""
    max_payload: int = DEFAULT_MAX_PAYLOAD
    """The largest payload accepted, in bytes of JSON."""
    durability: Durability = DEFAULT_DURABILITY
    """``replicated``: a dispatch returns its id only once a replica has the task (``WAIT 1``); ``async`` trusts
    Redis's asynchronous replication (a fail-over can lose a task whose id was returned)."""


@dataclass(frozen=True)
class WorkflowStep:
    """One step of a workflow: a single task, or several run in parallel (a group) whose results are collected."""

    tasks: tuple[tuple[str, Mapping[str, Any]], ...]
    """(task name, payload template) pairs; more than one makes the step a group."""
    group: bool = False


@dataclass(frozen=True)
class WorkflowSpec:
    name: str
    """Triggered like a task: ``jobkit dispatch NAME``, ``POST /api/jobs/trigger/NAME``."""
    steps: tuple[WorkflowStep, ...]
    """Run in order; a payload template may use ``{{ input.x }}`` (the dispatch payload) and ``{{ prev }}``
    (the previous step's result; a list of results after a group)."""
    api: bool = False
    """May be triggered through ``POST /api/jobs/trigger/{name}``."""


@dataclass(frozen=True)
class ExportSpec:
    name: str
    sql: str
    """A read-only query with ``:named`` parameters; never taken from a request."""
    timeout: timedelta = DEFAULT_EXPORT_TIMEOUT
    """The database cancels the query after this long (its statement timeout)."""
    where: tuple[str, int, int] | None = field(default=None, compare=False)
    """``(file, line, column)`` of the ``sql`` value in jobs.yaml, for ``jobkit check --db``."""


# -- alerts ----------------------------------------------------------------------------------------------------------
AlertKind = Literal["archived", "latency", "failure_rate", "archived_growth"]


@dataclass(frozen=True)
class AlertChannel:
    """Where an alert goes: ``log``, ``{webhook: URL}`` or ``{email: ADDRESS}`` (delivered by notification:send)."""

    kind: Literal["webhook", "email", "log"]
    target: str | None = None
    """The webhook URL or the email address; None for ``log``."""


@dataclass(frozen=True)
class AlertRule:
    name: str
    when: AlertKind
    """``archived`` (a task is dead), ``latency``, ``failure_rate`` or ``archived_growth``."""
    queues: tuple[str, ...]
    """Queues watched (``queue:`` or ``queues:``); empty means every declared queue."""
    channels: tuple[AlertChannel, ...]
    cooldown: timedelta = DEFAULT_COOLDOWN
    """After an alert, the rule stays silent this long: one incident, one alert."""
    over: float = 0.0
    """Threshold: seconds of latency, a failure rate (0..1) or a number of newly archived tasks."""
    window: timedelta | None = None
    """For ``failure_rate`` and ``archived_growth``: the span the rate or growth is measured over."""
    min_processed: int = 1
    """For ``failure_rate``: attempts needed in the window before the rate counts."""


@dataclass(frozen=True)
class Project:
    source: str
    """The file this project was loaded from, as the user named it."""
    queues: Mapping[str, QueueSpec]
    tasks: Mapping[str, TaskSpec]
    priority: PriorityMode = "weighted"
    worker: WorkerSpec = field(default_factory=WorkerSpec)
    exports: Mapping[str, ExportSpec] = field(default_factory=dict)
    default_queue: str = DEFAULT_QUEUE
    workflows: Mapping[str, WorkflowSpec] = field(default_factory=dict)
    alerts: Mapping[str, AlertRule] = field(default_factory=dict)
    """Alert rules under ``alerts:``, by name."""
    max_payload: int = DEFAULT_MAX_PAYLOAD
    """``max_payload`` at the top of jobs.yaml: every task's default."""

    def largest_payload(self) -> int:
        """The largest ``max_payload`` of any task (what a request body may be at most)."""
        return max([self.max_payload, *(task.max_payload for task in self.tasks.values())])

    def queue_names(self) -> list[str]:
        """Queues from the heaviest to the lightest, ties in file order."""
        return [q.name for q in sorted(self.queues.values(), key=lambda q: -q.weight)]

    def weights(self) -> dict[str, int]:
        """Queue name -> weight."""
        return {name: spec.weight for name, spec in self.queues.items()}


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
