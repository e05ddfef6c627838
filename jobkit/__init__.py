"""jobkit: background jobs declared in YAML, run by Dramatiq on Redis.

The public surface, listed in ``__all__`` (a test pins it). Importing ``jobkit`` loads only the error classes;
everything else (and Dramatiq, redis) is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from jobkit.errors import (
    ConfigError,
    DispatchError,
    DuplicateTask,
    JobkitError,
    PayloadError,
    ResultMissing,
    ResultTimeout,
    ScheduleError,
    SkipRetry,
    TaskCanceled,
    TaskFailed,
    TaskNotFound,
    TaskStateError,
    UnknownQueue,
    UnknownTask,
)

if TYPE_CHECKING:
    from jobkit import jobs
    from jobkit.engine.running import cancelled, progress
    from jobkit.facade import (
        Chain,
        chain,
        dispatch,
        dispatch_many,
        get_client,
        group,
        list_schedules,
        queues,
        result,
        schedule_once,
        schedule_recurring,
        set_client,
        unschedule,
    )
    from jobkit.scheduling.dynamic import ScheduleInfo
    from jobkit.services.client import Client, TaskRef
    from jobkit.services.queues import Queues

__all__ = [
    "Chain",
    "Client",
    "ConfigError",
    "DispatchError",
    "DuplicateTask",
    "JobkitError",
    "PayloadError",
    "Queues",
    "ResultMissing",
    "ResultTimeout",
    "ScheduleError",
    "ScheduleInfo",
    "SkipRetry",
    "TaskCanceled",
    "TaskFailed",
    "TaskNotFound",
    "TaskRef",
    "TaskStateError",
    "UnknownQueue",
    "UnknownTask",
    "cancelled",
    "chain",
    "dispatch",
    "dispatch_many",
    "get_client",
    "group",
    "jobs",
    "list_schedules",
    "progress",
    "queues",
    "result",
    "schedule_once",
    "schedule_recurring",
    "set_client",
    "unschedule",
]

#: Where each lazily imported name lives.
_LAZY = {
    **dict.fromkeys(("Chain", "chain", "dispatch", "dispatch_many", "get_client", "group"), "jobkit.facade"),
    **dict.fromkeys(("list_schedules", "queues"), "jobkit.facade"),
    **dict.fromkeys(("result", "schedule_once", "schedule_recurring", "set_client", "unschedule"), "jobkit.facade"),
    **dict.fromkeys(("cancelled", "progress"), "jobkit.engine.running"),
    **dict.fromkeys(("Client", "TaskRef"), "jobkit.services.client"),
    "Queues": "jobkit.services.queues",
    "ScheduleInfo": "jobkit.scheduling.dynamic",
}


def __getattr__(name: str) -> Any:
    if name == "jobs":
        return importlib.import_module("jobkit.jobs")
    if name == "__version__":
        from importlib.metadata import version

        return version("jobkit")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jobkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
