"""Builds the broker from Settings + Project and turns each task of jobs.yaml into a Dramatiq actor."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
from collections import defaultdict
from typing import Any, cast

import dramatiq
from dramatiq import Broker
from dramatiq.common import iter_queue
from dramatiq.middleware import AgeLimit, AsyncIO, Callbacks, Pipelines, ShutdownNotifications, TimeLimit
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

from .alerts import DeadTaskAlerts
from .broker import JobkitBroker, connect
from .errors import ConfigError
from .imports import import_exception, import_handler
from .limits import FlowControl
from .loader import load_project
from .model import Project, TaskSpec
from .priority import Priority
from .retries import Retries
from .settings import Settings
from .system import WorkerInfo
from .workflows import WorkflowSteps

__all__ = ["ProjectBoot", "build_broker", "declare_project", "open_broker"]

log = logging.getLogger("jobkit")

#: Exit code of a worker process stopped by a second signal (Dramatiq's RET_KILLED).
HARD_STOP_EXIT_CODE = 1


def _ms(value: Any) -> int:
    return int(value.total_seconds() * 1000)


def open_broker(settings: Settings, *, extra_middleware: list[dramatiq.Middleware] | None = None) -> JobkitBroker:
    """A broker on the configured Redis with jobkit's middleware; no actors yet."""
    client = connect(
        settings.effective_redis_url(),
        sentinels=settings.sentinels,
        master=settings.sentinel_master,
        password=settings.sentinel_password,
    )
    middleware = [
        AgeLimit(),
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(),
        # Issue 8. Before Priority: a deferred task must not be marked as started. WorkflowSteps' after hook runs
        # before Retries' (reverse order), so it learns about archiving in after_nack.
        FlowControl(),
        WorkflowSteps(),
        Priority(),
        AsyncIO(),
        # Only actors with store_results keep results; with it, handlers may return values without a warning.
        Results(backend=RedisBackend(client=client, namespace=f"{settings.namespace}-results")),
        TaskLog(),
        ReleaseOnExit(),
        WorkerInfo(),
        DeadTaskAlerts(),  # issue 6: `when: archived` alert rules, as a task is archived
        *(extra_middleware or []),
    ]
    return JobkitBroker(client=client, namespace=settings.namespace, middleware=middleware)


def declare_task(broker: JobkitBroker, task: TaskSpec) -> dramatiq.Actor[..., Any]:
    skip = tuple(import_exception(name) for name in task.retry.skip_retry_on)
    only = tuple(import_exception(name) for name in task.retry.retry_on)
    from .errors import SkipRetry

    return dramatiq.Actor(
        import_handler(task.handler),
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
            "retry_on": only,
            "skip_retry_on": skip,
            # Dramatiq logs these at info level instead of as unhandled errors.
            "throws": (SkipRetry, *skip),
            # Issue 8 (jobkit.limits.FlowControl): (starts, window ms) and running-at-once caps.
            "jobkit_rate_limit": (
                (task.rate_limit.count, _ms(task.rate_limit.per)) if task.rate_limit is not None else None
            ),
            "jobkit_concurrency": task.concurrency,
        },
    )


def declare_project(broker: JobkitBroker, project: Project) -> None:
    """Every queue (so workers consume it even before a task uses it) and one actor per task."""
    broker.queue_weights = {name: spec.weight for name, spec in project.queues.items()}
    broker.strict_priority = project.priority == "strict"
    for name in project.queue_names():
        broker.declare_queue(name)
    for task in project.tasks.values():
        if task.name not in broker.actors:
            declare_task(broker, task)


def build_broker(settings: Settings, project: Project) -> JobkitBroker:
    broker = open_broker(settings)
    declare_project(broker, project)
    return broker


class TaskLog(dramatiq.Middleware):
    """One log line per finished attempt: task, id, outcome and run time."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}

    def before_process_message(self, broker: Broker, message: Any) -> None:
        self.started[message.message_id] = time.monotonic()

    def after_process_message(
        self, broker: Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        took_ms = (time.monotonic() - self.started.pop(message.message_id, time.monotonic())) * 1000
        if exception is None:
            log.info("%s %s done in %.0fms", message.actor_name, message.message_id, took_ms)
        else:
            outcome = "archived" if message.failed else "will retry"
            log.info(
                "%s %s failed in %.0fms (%s): %s",
                message.actor_name,
                message.message_id,
                took_ms,
                outcome,
                message.options.get("last_error", exception),
            )

    def after_skip_message(self, broker: Broker, message: Any) -> None:
        self.started.pop(message.message_id, None)


class ReleaseOnExit(dramatiq.Middleware):
    """A worker leaving hands back what it will not run. On SIGTERM, prefetched tasks go back at once, so other
    workers can start them while the running ones finish. Whatever is still held after a graceful stop whose
    timeout ran out, on a second SIGTERM (Dramatiq's hard stop, which skips atexit in its worker processes), or at
    interpreter exit goes back too."""

    def before_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        waiting: dict[str, list[Any]] = defaultdict(list)
        for item in iter_queue(worker.work_queue):
            waiting[item.message.queue_name].append(item.message)
            worker.work_queue.task_done()
        for queue_name, messages in waiting.items():
            try:
                worker.consumers[queue_name].requeue_messages(messages)
            except Exception as exc:
                log.warning("could not hand back %d prefetched task(s) (%s)", len(messages), exc)

    def after_worker_boot(self, broker: Broker, worker: Any) -> None:
        atexit.register(self.release, broker)
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        signals = 0

        def on_sigterm(signum: int, frame: Any) -> None:
            nonlocal signals
            signals += 1
            if signals == 1:
                if callable(previous):
                    previous(signum, frame)
                return
            # Hard stop. Exit right here: Dramatiq's own exit path waits forever on its AsyncIO loop thread.
            self.release(broker)
            log.warning("stopped at once; unfinished tasks were handed back")
            logging.shutdown()
            os._exit(HARD_STOP_EXIT_CODE)

        signal.signal(signal.SIGTERM, on_sigterm)

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        atexit.unregister(self.release)
        self.release(broker)

    @staticmethod
    def release(broker: Broker) -> None:
        try:
            released = cast(JobkitBroker, broker).release()
        except Exception as exc:  # Redis gone: the others recover the tasks once the heartbeat times out
            log.warning("could not hand back unfinished tasks (%s); other workers will recover them", exc)
            return
        if released:
            log.warning("handed %d unfinished task(s) back to their queues", released)


class ProjectBoot(dramatiq.Middleware):
    """Loads jobs.yaml when a worker process boots, so ``dramatiq jobkit.actors`` needs no code of its own."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def after_process_boot(self, broker: Broker) -> None:
        try:
            project = load_project(self.settings.jobs_path)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            raise SystemExit(1) from None
        jobkit_broker = cast(JobkitBroker, broker)
        declare_project(jobkit_broker, project)
        from .client import Client, set_client

        set_client(Client(self.settings, project, jobkit_broker))
