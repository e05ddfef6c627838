"""Dispatching tasks: ``jobkit.dispatch("email:send", to=..., delay=timedelta(minutes=5))`` -> :class:`TaskRef`."""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dramatiq.message import Message

from .broker import JobkitBroker
from .errors import DispatchError, DuplicateTask, PayloadError, UnknownQueue, UnknownTask
from .imports import import_handler
from .loader import load_project
from .model import Project, TaskSpec, WorkflowSpec
from .settings import Settings
from .yamlnodes import did_you_mean

__all__ = ["Client", "TaskRef", "current_client", "get_client", "set_client"]


@dataclass(frozen=True)
class TaskRef:
    """A dispatched task: its id (stable across retries), queue and task name."""

    id: str
    queue: str
    task: str


def _json_problem(value: Any, path: str) -> str | None:
    """Where ``value`` stops being plain JSON (tuples count as lists), or None."""
    if value is None or isinstance(value, bool | int | str):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} is {value!r}, which JSON cannot carry"
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if found := _json_problem(item, f"{path}[{index}]"):
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has a key {key!r} that is not text"
            if found := _json_problem(item, f"{path}.{key}"):
                return found
        return None
    return f"{path} is a {type(value).__name__}, which is not JSON (send text, numbers, lists or mappings)"


def check_payload(task: TaskSpec, signature: inspect.Signature, payload: dict[str, Any]) -> None:
    """Refuse a payload that the handler cannot take, naming the task and the field."""
    params = signature.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = {n: p for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for key in payload:
        if key not in named and not takes_any:
            hint = did_you_mean(key, set(named))
            accepted = ", ".join(named) or "no fields"
            raise PayloadError(
                f"{task.name}: unknown payload field {key!r} ({hint or 'the handler takes ' + accepted})"
            )
    missing = [n for n, p in named.items() if p.default is p.empty and n not in payload]
    if missing:
        raise PayloadError(f"{task.name}: missing payload field {missing[0]!r} (required: {', '.join(missing)})")
    for key, value in payload.items():
        if problem := _json_problem(value, key):
            raise PayloadError(f"{task.name}: payload field {problem}")


class Client:
    """Dispatches tasks of one project onto one broker; the API, CLI and handlers all go through one of these."""

    def __init__(self, settings: Settings, project: Project, broker: JobkitBroker | None = None) -> None:
        from .runtime import build_broker

        self.settings = settings
        self.project = project
        self.broker = broker if broker is not None else build_broker(settings, project)
        self._signatures: dict[str, inspect.Signature] = {}

    @classmethod
    def from_env(cls) -> Client:
        settings = Settings.from_env()
        return cls(settings, load_project(settings.jobs_path))

    def signature(self, task: TaskSpec) -> inspect.Signature:
        if task.name not in self._signatures:
            self._signatures[task.name] = inspect.signature(import_handler(task.handler))
        return self._signatures[task.name]

    def task_spec(self, name: str) -> TaskSpec:
        try:
            return self.project.tasks[name]
        except KeyError:
            hint = did_you_mean(name, set(self.project.tasks)) or "declared tasks: " + ", ".join(self.project.tasks)
            raise UnknownTask(f"unknown task {name!r} ({hint})") from None

    def dispatch(
        self,
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
        if task in self.project.workflows and task not in self.project.tasks:  # issue 8: a workflow by name
            if delay is not None or at is not None or queue or max_retries is not None or timeout is not None:
                raise DispatchError(f"{task}: a workflow takes only its payload (no delay, at, queue or options)")
            return self.start_workflow(self.project.workflows[task], payload)
        message, delay_ms, claim = self._message(task, delay, at, queue, max_retries, timeout, payload)
        if claim is None:
            self.broker.enqueue(message, delay=delay_ms)
        else:
            message, holder = self.broker.enqueue_claimed(message, *claim, delay=delay_ms)
            if holder is not None:
                raise _duplicate(task, holder)
        return TaskRef(id=message.message_id, queue=message.queue_name, task=task)

    async def dispatch_async(
        self,
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
        """:meth:`dispatch` for an event loop (the API): the same checks, the enqueue awaited on asyncio Redis."""
        if task in self.project.workflows and task not in self.project.tasks:
            return await asyncio.to_thread(
                self.dispatch, task, delay=delay, at=at, queue=queue, max_retries=max_retries, timeout=timeout,
                **payload,
            )  # fmt: skip
        message, delay_ms, claim = self._message(task, delay, at, queue, max_retries, timeout, payload)
        message, holder = await self.broker.enqueue_async(message, delay=delay_ms, claim=claim)
        if holder is not None:
            raise _duplicate(task, holder)
        return TaskRef(id=message.message_id, queue=message.queue_name, task=task)

    def _message(
        self,
        task: str,
        delay: timedelta | float | None,
        at: datetime | None,
        queue: str | None,
        max_retries: int | None,
        timeout: timedelta | float | None,
        payload: dict[str, Any],
    ) -> tuple[Message[Any], int | None, tuple[str, int] | None]:
        """Check everything and build the message, its delay and (for a unique task) its claim."""
        spec = self.task_spec(task)
        queue_name = queue or spec.queue
        if queue_name not in self.project.queues:
            hint = did_you_mean(queue_name, set(self.project.queues)) or "declared: " + ", ".join(self.project.queues)
            raise UnknownQueue(f"{task}: unknown queue {queue_name!r} ({hint})")
        check_payload(spec, self.signature(spec), payload)
        options: dict[str, Any] = {}
        if max_retries is not None:
            if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
                raise DispatchError(f"{task}: max_retries must be a whole number >= 0, found {max_retries!r}")
            options["max_retries"] = max_retries
        if timeout is not None:
            seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
            if seconds <= 0:
                raise DispatchError(f"{task}: timeout must be positive, found {timeout!r}")
            options["time_limit"] = int(seconds * 1000)
        delay_ms = self._delay_ms(task, delay, at)
        message: Message[Any] = Message(
            queue_name=queue_name, actor_name=task, args=(), kwargs=payload, options=options
        )
        claim = None
        if spec.unique is not None:  # refuse a duplicate inside the TTL, in the enqueue's own step
            from .limits import unique_lock_key

            key = unique_lock_key(self.settings.namespace, spec, payload)
            message.options["jobkit_unique"] = key
            claim = (key, int(spec.unique.total_seconds() * 1000))
        return message, delay_ms, claim

    def start_workflow(self, workflow: WorkflowSpec, payload: dict[str, Any]) -> TaskRef:
        """Start one run of ``workflow``; the returned id is the workflow's (see ``Queues.workflow``), the queue is
        its first step's."""
        from .workflows import start_workflow

        def check(task: str, rendered: dict[str, Any]) -> None:
            spec = self.task_spec(task)
            check_payload(spec, self.signature(spec), rendered)

        workflow_id, messages = start_workflow(
            self.broker, self.broker.client, self.settings.namespace, workflow, payload, check
        )
        return TaskRef(id=workflow_id, queue=messages[0].queue_name, task=workflow.name)

    @staticmethod
    def _delay_ms(task: str, delay: timedelta | float | None, at: datetime | None) -> int | None:
        if delay is not None and at is not None:
            raise DispatchError(f"{task}: give delay or at, not both")
        if at is not None:
            if not isinstance(at, datetime):
                raise DispatchError(f"{task}: at must be a datetime, found {type(at).__name__}")
            # A naive datetime is local time, as datetime.timestamp() reads it.
            return max(0, math.ceil((at.timestamp() - time.time()) * 1000)) or None
        if delay is None:
            return None
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        if seconds < 0:
            raise DispatchError(f"{task}: delay cannot be negative, found {delay!r}")
        return math.ceil(seconds * 1000) or None


def _duplicate(task: str, holder: str) -> DuplicateTask:
    return DuplicateTask(
        f"{task}: a task with the same unique key is already queued or running ({holder}); "
        "it can be dispatched again once that one finishes or the lock expires",
        existing_id=holder,
    )


_default: Client | None = None
_default_lock = threading.Lock()


def get_client() -> Client:
    """The process's client: the worker's own inside a handler, else one built from the environment on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client.from_env()
        return _default


def current_client() -> Client | None:
    """The client already set for this process (a worker's own), without building one from the environment."""
    with _default_lock:
        return _default


def set_client(client: Client | None) -> None:
    global _default
    with _default_lock:
        _default = client
