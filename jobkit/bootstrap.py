"""The composition root: Settings and the project's files -> the objects a process needs, wired together.

Everything below this module gets its dependencies through constructors; this is where they are made. A process
builds one :class:`~jobkit.services.client.Client` (``open_client``): the Redis connection, the key layout, the
broker with jobkit's middleware stack, the project's actors (built-in handlers bound to that client), the message
builder and the workflow runs. ``dramatiq jobkit.actors`` calls :func:`worker_broker`; the API, the CLI and the
scheduler call :func:`open_client`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, ShutdownNotifications, TimeLimit
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

from jobkit.config.imports import import_handler
from jobkit.config.jobs_file import load_project
from jobkit.config.logs import adopt_worker_logging
from jobkit.config.model import Project, TaskSpec
from jobkit.config.settings import Settings
from jobkit.engine.actors import declare_project
from jobkit.engine.broker import JobkitBroker
from jobkit.engine.middleware.archive_hook import ArchiveHook
from jobkit.engine.middleware.flow_control import FlowControl
from jobkit.engine.middleware.on_demand import OnDemand
from jobkit.engine.middleware.priority import QueuePriority
from jobkit.engine.middleware.release_on_exit import ReleaseOnExit
from jobkit.engine.middleware.retries import Retries
from jobkit.engine.middleware.running_tasks import RunningTasks
from jobkit.engine.middleware.task_log import TaskLog
from jobkit.engine.middleware.worker_info import WorkerInfo
from jobkit.engine.middleware.workflow_steps import WorkflowSteps
from jobkit.engine.work_queue import WorkQueue
from jobkit.errors import ConfigError, SettingsError
from jobkit.services.alerts import Alerts
from jobkit.services.auth import sealing_secrets
from jobkit.services.client import Client, ClientTask
from jobkit.services.redaction import RedactMessages
from jobkit.services.redis_policy import check_eviction_policy
from jobkit.store.connection import connect
from jobkit.store.keys import Keys

__all__ = ["build_broker", "default_client", "load", "open_client", "set_default_client", "worker_broker"]


def load(settings: Settings | None = None) -> tuple[Settings, Project]:
    """The settings (from the environment unless given) and the project their jobs.yaml declares."""
    settings = settings or Settings.from_env()
    return settings, load_project(settings.jobs_path, sealing_key=bool(sealing_secrets(settings)))


def open_client(
    settings: Settings | None = None, project: Project | None = None, *, heartbeat_timeout: timedelta | None = None
) -> Client:
    """A client on a new broker for ``project`` (default: the one ``settings``' jobs.yaml declares), with jobkit's
    middleware and every task declared. ``heartbeat_timeout`` (after which a silent worker counts as dead) also sets
    how often workers run maintenance (a third of it); both default to the broker's."""
    if project is None:
        settings, project = load(settings)
    settings = settings or Settings.from_env()
    redis = connect(settings)
    keys = Keys(settings.namespace)
    # Dramatiq's default stack, minus its Retries (jobkit's replaces it); jobkit's middleware need the broker.
    stock = [AgeLimit(), TimeLimit(), ShutdownNotifications(), Callbacks(), Pipelines()]
    work_queue = WorkQueue(project.weights(), strict=project.priority == "strict")
    timing: dict[str, Any] = {}
    if heartbeat_timeout is not None:
        timing = {
            "heartbeat_timeout": int(heartbeat_timeout.total_seconds() * 1000),
            "maintenance_interval": heartbeat_timeout.total_seconds() / 3,
        }
    broker = JobkitBroker(client=redis, keys=keys, middleware=stock, work_queue=work_queue, **timing)
    client = Client(settings, project, broker)
    for middleware in (
        # Dramatiq's retry options, Dramatiq's defaults for plain actors; YAML tasks carry their policy as options.
        Retries(),
        # Before the priority middleware: a deferred task must not be marked as started. WorkflowSteps' after hook
        # runs before Retries' (reverse order), so it learns about archiving in after_nack.
        FlowControl(broker),
        WorkflowSteps(client.workflows),
        QueuePriority(broker),
        # Results (store_results) and AsyncIO (async actors) only once an actor uses them.
        OnDemand(lambda: Results(backend=RedisBackend(client=redis, namespace=keys.results))),
        TaskLog(settings.log_successes),
        ReleaseOnExit(broker),
        WorkerInfo(broker),
        ArchiveHook(Alerts(client).on_archived),  # `when: archived` alert rules, as a task is archived
        # Last: its before hook runs after all others', its after hook first (results, progress, cancellation).
        RunningTasks(broker, client.sealer),
    ):
        broker.add_middleware(middleware)
    declare_project(broker, project, _handlers(client), client.sealer)
    RedactMessages.install(project)
    return client


def build_broker(settings: Settings, project: Project) -> JobkitBroker:
    """The broker :func:`open_client` builds (for tests and tools that drive a broker directly)."""
    return open_client(settings, project).broker


def _handlers(client: Client) -> Callable[[TaskSpec], Callable[..., Any]]:
    def handler_for(task: TaskSpec) -> Callable[..., Any]:
        handler = import_handler(task.handler)
        return handler.bind(client) if isinstance(handler, ClientTask) else handler

    return handler_for


def worker_broker() -> JobkitBroker:
    """The broker of ``dramatiq jobkit.actors``: the project from the environment's jobs.yaml, its tasks declared,
    and its client made the process's default (``jobkit.dispatch`` inside a handler uses the worker's broker).
    A broken file or setting exits with the same text ``jobkit check`` prints. Log lines take the format
    ``JOBKIT_LOG_FORMAT`` asks for (Dramatiq's CLI has set logging up before this runs)."""
    try:
        settings = Settings.from_env()
        adopt_worker_logging(settings.log_format)
        client = open_client(settings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(1) from None
    except SettingsError as exc:
        print(f"jobkit: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    check_eviction_policy(client.redis, "worker")
    set_default_client(client)
    return client.broker


# -- the process's default client: only the public edge (jobkit.dispatch and friends) reads it -----------------------
_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The process's client: the worker's own inside a handler, else one built from the environment on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = open_client()
        return _default


def set_default_client(client: Client | None) -> None:
    """Make ``client`` the default of :func:`default_client` (None: build one from the environment next time)."""
    global _default
    with _default_lock:
        _default = client
