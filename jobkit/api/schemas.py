"""Request and response bodies of the REST API; the OpenAPI document at ``/schema`` is generated from these.

Stats and task objects are the service layer's own dataclasses (``QueueStats``, ``TaskInfo``), so the JSON field names
are the ones SPEC §5 fixes and cannot drift from what the CLI prints with ``--json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import msgspec

from jobkit.scheduling.dynamic import ScheduleInfo
from jobkit.services.queues import BulkOutcome, QueueStats, TaskInfo
from jobkit.services.system import MemoryReport, TaskType

__all__ = [
    "ArchivedTask",
    "BatchTriggered",
    "BulkOutcome",
    "BulkRequest",
    "Canceled",
    "DeletedTask",
    "EmailTrigger",
    "ErrorBody",
    "ExportTrigger",
    "ExportTriggered",
    "Health",
    "HistoryPage",
    "HistoryRow",
    "NewSchedule",
    "PauseState",
    "PendingArchived",
    "PendingDeleted",
    "QueueStats",
    "Retried",
    "RetryRequest",
    "ScheduleDeleted",
    "ScheduleInfo",
    "ScheduleList",
    "SearchAnswer",
    "StatsPage",
    "TaskInfo",
    "TaskPage",
    "TaskTypeList",
    "Triggered",
]


class Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A request body: a field it does not declare is refused (422 naming it), never silently dropped."""


@dataclass
class ErrorBody:
    """Every error: the HTTP status again, and a sentence saying what is wrong (naming the field, if one is)."""

    status_code: int
    detail: str


@dataclass
class StatsPage:
    queues: list[QueueStats]
    memory: MemoryReport | None = None
    """Redis's used memory and jobkit's share, per queue with its largest key (None when Redis refuses MEMORY)."""


@dataclass
class HistoryRow:
    queue: str
    date: str
    """The day (UTC), ``YYYY-MM-DD``."""
    processed: int
    failed: int


@dataclass
class HistoryPage:
    days: int
    history: list[HistoryRow]


class EmailTrigger(Strict):
    to: str
    subject: str
    body: str
    data: dict[str, Any] | None = None
    """Values for ``$name`` placeholders in the subject and body."""


class ExportTrigger(Strict):
    export_type: Literal["csv", "excel", "pdf"]
    export: str
    """The name of a query declared under ``exports:`` in jobs.yaml (never SQL)."""
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    user_id: int | str | None = None
    """Whose export; an admin may name anyone, a user token exports for its own ``sub``."""
    filename: str | None = None


@dataclass
class Triggered:
    message: str
    status: Literal["queued"]
    task_id: str
    task: str
    queue: str


@dataclass
class ExportTriggered:
    message: str
    filename: str
    status: Literal["queued"]
    task_id: str


@dataclass
class PauseState:
    queue: str
    paused: bool


@dataclass
class PendingDeleted:
    queue: str
    deleted: int


@dataclass
class PendingArchived:
    queue: str
    archived: int


@dataclass
class TaskPage:
    queue: str
    state: str
    page: int
    size: int
    total: int
    tasks: list[TaskInfo]


@dataclass
class DeletedTask:
    queue: str
    task_id: str
    deleted: bool
    state: str
    """The state the task was in."""


@dataclass
class Canceled:
    queue: str
    task_id: str
    previous_state: str
    """The state the task was in."""
    status: Literal["canceled", "canceling"]
    """``canceled``: it was not running and is archived as canceled now; ``canceling``: the worker that holds it
    interrupts it within a second (read the task to see it archived)."""


@dataclass
class ArchivedTask:
    queue: str
    task_id: str
    previous_state: str
    status: Literal["archived"]


@dataclass
class BatchTriggered:
    message: str
    status: Literal["queued"]
    task: str
    queue: str
    task_ids: list[str]


@dataclass
class SearchAnswer:
    tasks: list[TaskInfo]
    """Matching tasks, each with its queue and state; sensitive fields "***"."""
    cursor: str | None
    """Pass it back as ``cursor`` for more; null when every stored task was looked at."""
    scanned: int
    """Stored tasks looked at by this answer."""


class BulkRequest(Strict):
    """One action on a selection (``ids``) or on every task of a queue in one ``state``: give exactly one of them."""

    action: Literal["run", "retry", "delete", "archive"]
    """``run`` (``retry`` is the same: the task runs now; archived ones with a fresh retry budget), ``delete`` or
    ``archive``."""
    ids: list[str] | None = None
    state: Literal["pending", "active", "scheduled", "retry", "archived", "completed"] | None = None


@dataclass
class TaskTypeList:
    task_types: list[TaskType]


class RetryRequest(Strict):
    queue: str
    task_id: str


@dataclass
class Retried:
    message: str
    queue: str
    task_id: str
    previous_state: str
    status: Literal["queued"]


@dataclass
class ScheduleList:
    schedules: list[ScheduleInfo]


class NewSchedule(Strict):
    """A one-time entry (``at``) or a recurring one (``every`` or ``cron``): exactly one of the three."""

    task: str
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    at: datetime | None = None
    every: str | None = None
    """A duration like ``5m``; fires are anchored to the Unix epoch."""
    cron: str | None = None
    queue: str | None = None
    timezone: str = "UTC"


@dataclass
class ScheduleDeleted:
    id: str
    deleted: bool


@dataclass
class Health:
    status: Literal["ok", "unavailable"]
    redis: Literal["ok", "unreachable"]
    workers: int | None
    """Worker processes with a live heartbeat (None when Redis is unreachable)."""
    last_check: dict[str, Any] | None = None
    """The latest system:health_check result (slow queues, growing paused queues, alerts fired), or None when none
    ran in the last 3 hours (is the scheduler running?)."""


@dataclass
class WorkflowTask:
    task: str
    id: str | None
    queue: str | None
    state: str
    """waiting, pending, running, retry, failed or completed."""
    result: Any


@dataclass
class WorkflowStepState:
    index: int
    group: bool
    state: str
    tasks: list[WorkflowTask]


@dataclass
class FailedTask:
    id: str
    queue: str | None


@dataclass
class WorkflowState:
    id: str
    name: str | None
    status: str | None
    """running, completed or failed."""
    input: dict[str, Any]
    failed_step: int | None
    """The index of the step that failed; retrying its archived task resumes the run."""
    failed_task: FailedTask | None
    error: str | None
    result: Any
    created_at: str | None
    finished_at: str | None
    steps: list[WorkflowStepState]
    triggered_by: str | None = None
    """The ``sub`` of the API token that started the run."""

    @classmethod
    def of(cls, info: dict[str, Any]) -> WorkflowState:
        steps = [
            WorkflowStepState(s["index"], s["group"], s["state"], [WorkflowTask(**t) for t in s["tasks"]])
            for s in info["steps"]
        ]
        failed = info.get("failed_task")
        return cls(
            id=info["id"],
            name=info.get("name"),
            status=info.get("status"),
            input=info.get("input") or {},
            failed_step=info.get("failed_step"),
            failed_task=FailedTask(failed["id"], failed.get("queue")) if failed else None,
            error=info.get("error"),
            result=info.get("result"),
            created_at=info.get("created_at"),
            finished_at=info.get("finished_at"),
            steps=steps,
            triggered_by=info.get("triggered_by"),
        )


@dataclass
class TaskLimits:
    task: str
    unique: int | None
    """Seconds a duplicate dispatch is refused for (None: not unique)."""
    unique_key: str | None
    rate_limit: str | None
    concurrency: int | None
    running: int | None
    """Running now, when the task has a concurrency cap."""
    starts_in_window: int | None
    """Starts in the current rate-limit window, when the task has a rate limit."""


@dataclass
class DuplicateBody:
    """409 for a unique task dispatched again inside its TTL: the error, plus the id of the task that holds it."""

    status_code: int
    detail: str
    task_id: str
