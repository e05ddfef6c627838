"""What ``import jobkit`` offers as functions: each one runs on the process's default client.

The default is the worker's own client inside a handler, else one built from the environment on first use
(:func:`jobkit.bootstrap.default_client`); ``set_client`` replaces it. This is the only place below the
command-line and API edges that reads it, as Dramatiq keeps ``get_broker()`` at its edge.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from jobkit.bootstrap import default_client, set_default_client
from jobkit.config.model import WorkflowSpec
from jobkit.scheduling.dynamic import Schedules
from jobkit.services.client import Client, TaskRef
from jobkit.services.queues import Queues
from jobkit.services.workflows import StepItem, chain_spec, group

__all__ = [
    "Chain",
    "chain",
    "default_client",
    "dispatch",
    "dispatch_many",
    "get_client",
    "group",
    "list_schedules",
    "queues",
    "result",
    "schedule_once",
    "schedule_recurring",
    "set_client",
    "unschedule",
]

P = ParamSpec("P")
R = TypeVar("R")


def _on_default(method: Callable[Concatenate[Client, P], R]) -> Callable[P, R]:
    """``method`` of :class:`Client`, called on the default client (same signature, same documentation)."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return method(default_client(), *args, **kwargs)

    return call


def _on_schedules(method: Callable[Concatenate[Schedules, P], R]) -> Callable[P, R]:
    """``method`` of :class:`Schedules`, on the default client's schedules."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return method(Schedules(default_client()), *args, **kwargs)

    return call


dispatch = _on_default(Client.dispatch)
dispatch_many = _on_default(Client.dispatch_many)
schedule_once = _on_schedules(Schedules.once)
schedule_recurring = _on_schedules(Schedules.recurring)
unschedule = _on_schedules(Schedules.remove)
list_schedules = _on_schedules(Schedules.list)


def get_client() -> Client:
    """The process's default client."""
    return default_client()


def set_client(client: Client | None) -> None:
    """Make ``client`` the process's default (None: build one from the environment on next use)."""
    set_default_client(client)


def queues() -> Queues:
    """Stats, pause/resume and task operations on the default client's queues."""
    return Queues(default_client())


def result(task_id: str, timeout: timedelta | float | None = None, queue: str | None = None) -> Any:
    """What task (or workflow run) ``task_id`` returned, waiting up to ``timeout`` for it to finish; see
    :meth:`jobkit.TaskRef.result` for what it raises. ``queue`` spares a look through every declared queue."""
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
    return default_client().lifecycle.result(task_id, queue, seconds)


@dataclass(frozen=True)
class Chain:
    """A workflow built in Python; ``dispatch(**input)`` starts one run of it on the default client."""

    spec: WorkflowSpec

    def dispatch(self, **payload: Any) -> TaskRef:
        return default_client().start_workflow(self.spec, payload)


def chain(*steps: StepItem, name: str = "chain") -> Chain:
    """``chain(("a:fetch", {"n": 3}), group("b:x", "b:y"), ("c:sum", {"values": "{{ prev }}"}))``."""
    return Chain(chain_spec(*steps, name=name))
