"""jobs.yaml's tasks as Dramatiq actors on a broker: one actor per task, options from the task's policy.

The policy is written as Dramatiq's own actor options (``max_retries``, ``min_backoff``/``max_backoff`` from
``backoff``, ``time_limit`` from ``timeout``, ``throws`` for ``SkipRetry`` and ``skip_retry_on``) plus jobkit's
(``retry_on``, ``retention``, limits), so the retry middleware treats a YAML task like any actor and a message's
``send_with_options`` overrides it as in Dramatiq.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import dramatiq

from jobkit.config.imports import import_exception
from jobkit.config.model import Project, TaskSpec
from jobkit.engine.broker import JobkitBroker
from jobkit.engine.middleware.flow_control import CONCURRENCY_OPTION, RATE_OPTION
from jobkit.engine.middleware.running_tasks import MAX_RESULT_OPTION, SENSITIVE_OPTION
from jobkit.engine.sealing import Sealer
from jobkit.errors import SkipRetry

__all__ = ["declare_project", "declare_task"]


def _ms(value: timedelta) -> int:
    return int(value.total_seconds() * 1000)


def declare_task(
    broker: JobkitBroker, task: TaskSpec, fn: Callable[..., Any], sealer: Sealer | None = None
) -> dramatiq.Actor[..., Any]:
    """The actor of ``task``, running ``fn`` (the handler, with any services it needs already bound); a task with
    sensitive fields gets them opened just before ``fn`` runs."""
    if task.sensitive and sealer is not None:
        fn = sealer.opener(fn, task.sensitive)
    skip = tuple(import_exception(name) for name in task.retry.skip_retry_on)
    only = tuple(import_exception(name) for name in task.retry.retry_on)
    rate = (task.rate_limit.count, _ms(task.rate_limit.per)) if task.rate_limit is not None else None
    return dramatiq.Actor(
        fn,
        broker=broker,
        actor_name=task.name,
        queue_name=task.queue,
        priority=0,
        options={
            "max_retries": task.retry.max_retries,
            "min_backoff": _ms(task.retry.backoff_min),
            "max_backoff": _ms(task.retry.backoff_max),
            "time_limit": _ms(task.timeout),
            "retention": _ms(task.retention),
            "retention_max": task.retention_max,
            "retry_on": only,
            "skip_retry_on": skip,
            # Dramatiq logs these at info level instead of as unhandled errors.
            "throws": (SkipRetry, *skip),
            RATE_OPTION: rate,
            CONCURRENCY_OPTION: task.concurrency,
            # A result is kept (sealed where sensitive) when no larger than a payload may be.
            SENSITIVE_OPTION: task.sensitive,
            MAX_RESULT_OPTION: task.max_payload,
        },
    )


def declare_project(
    broker: JobkitBroker,
    project: Project,
    handler_for: Callable[[TaskSpec], Callable[..., Any]],
    sealer: Sealer | None = None,
) -> None:
    """Every queue (so workers consume it even before a task uses it) and one actor per task; ``handler_for`` gives
    the callable each task's actor runs."""
    for name in project.queue_names():
        broker.declare_queue(name)
    for task in project.tasks.values():
        if task.name not in broker.actors:
            declare_task(broker, task, handler_for(task), sealer)
