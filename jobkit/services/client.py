"""Dispatching tasks and starting workflow runs: ``client.dispatch("email:send", to=...)`` -> :class:`TaskRef`.

A :class:`Client` is one project on one broker. It is built by :mod:`jobkit.bootstrap` (the API, the CLI, a worker
and ``jobkit.dispatch`` each hold one) and passed to whatever needs it. Every message it sends comes from the
message builder (:mod:`jobkit.engine.messages`), so a dispatch, an API trigger and a workflow step are checked the
same way.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from jobkit.config.model import Project, TaskSpec, WorkflowSpec
from jobkit.config.settings import Settings
from jobkit.engine.broker import JobkitBroker
from jobkit.engine.messages import DISPATCH_OPTIONS, MessageBuilder, Outgoing, duplicate_error
from jobkit.engine.sealing import Sealer
from jobkit.engine.workflows import WorkflowRuns
from jobkit.errors import DispatchError, DuplicateTask, JobkitError, PayloadError
from jobkit.services.auth import sealer_for
from jobkit.services.lifecycle import Lifecycle

__all__ = ["Client", "ClientTask", "TaskRef", "needs_client"]

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class TaskRef:
    """A dispatched task: its id (stable across retries), queue and task name; it can wait for the task's result,
    read its progress and cancel it."""

    id: str
    queue: str
    task: str
    _lifecycle: Lifecycle | None = field(default=None, compare=False, repr=False)

    def result(self, timeout: timedelta | float | None = None) -> Any:
        """What the handler returned, once the task completed, waiting up to ``timeout`` (None: as long as it
        takes; no polling). Raises ``TaskFailed`` (archived; ``last_error``), ``TaskCanceled``, ``ResultMissing``
        (completed, nothing kept) or ``ResultTimeout``. For a workflow run: its last step's result."""
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        return self._tracked().result(self.id, self.queue, seconds)

    def progress(self) -> dict[str, Any] | None:
        """What the handler last reported with ``jobkit.progress()`` (``done``, ``total``, ``percent``, ``note``,
        ``updated_at``), or None."""
        return self._tracked().progress(self.id, self.queue)

    def cancel(self, by: str = "python") -> str:
        """Cancel the task (see ``jobkit.queues().cancel``); returns the state it was in."""
        return self._tracked().cancel(self.id, self.queue, by)

    def _tracked(self) -> Lifecycle:
        if self._lifecycle is None:
            raise JobkitError(
                f"TaskRef {self.id!r} was built by hand: use jobkit.result({self.id!r}) or jobkit.queues() instead"
            )
        return self._lifecycle


class Client:
    """Dispatches the tasks of one project onto one broker."""

    def __init__(
        self, settings: Settings, project: Project, broker: JobkitBroker, sealer: Sealer | None = None
    ) -> None:
        self.settings = settings
        self.project = project
        self.broker = broker
        self.redis = broker.client
        self.keys = broker.keys
        #: Seals and opens sensitive fields (from the settings' keys unless given); None without a key.
        self.sealer = sealer if sealer is not None else sealer_for(settings)
        self.builder = MessageBuilder(project, broker.keys, self.sealer)
        self.workflows = WorkflowRuns(broker, self.builder)
        #: Results, progress, cancel and archive: what the TaskRefs it returns ask about their tasks.
        self.lifecycle = Lifecycle(broker, project, self.workflows, self.sealer)

    def task_spec(self, name: str) -> TaskSpec:
        """The declared task ``name``; raises :class:`~jobkit.errors.UnknownTask` with a "did you mean"."""
        return self.builder.task_spec(name)

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
        """Enqueue ``task`` with ``payload`` as its keyword arguments, now, after ``delay`` or at ``at``; a workflow's
        name starts a run of it. Raises a :class:`~jobkit.errors.DispatchError` naming what is wrong."""
        options = {"delay": delay, "at": at, "queue": queue, "max_retries": max_retries, "timeout": timeout}
        return self._send(task, options, payload)

    def dispatch_many(
        self,
        task: str,
        payloads: Iterable[Mapping[str, Any]],
        /,
        *,
        delay: timedelta | float | None = None,
        at: datetime | None = None,
        queue: str | None = None,
        max_retries: int | None = None,
        timeout: timedelta | float | None = None,
        triggered_by: str | None = None,
    ) -> list[TaskRef]:
        """Enqueue one ``task`` per payload, with the same options for all. Every payload is checked first, as
        :meth:`dispatch` checks one: if any is refused, nothing is enqueued and the error names its index. Then they
        go out in pipelined batches, each message through the message builder (a ``unique`` task's lock holds per
        payload: a payload whose lock is held is not enqueued, and :class:`~jobkit.errors.DuplicateTask` says which
        after the others went; its ``refs`` lists what was enqueued, None where refused)."""
        self.task_spec(task)  # an unknown task is refused once, not per payload
        if task in self.project.workflows and task not in self.project.tasks:
            raise DispatchError(f"{task}: a workflow is started one run at a time (dispatch), not in bulk")
        options: dict[str, Any] = {
            "delay": delay, "at": at, "queue": queue, "max_retries": max_retries, "timeout": timeout,
            "triggered_by": triggered_by,
        }  # fmt: skip
        built: list[Outgoing] = []
        for index, payload in enumerate(payloads):
            if not isinstance(payload, Mapping):
                raise PayloadError(f"{task}: payload {index} is {type(payload).__name__}, not an object of fields")
            try:
                built.append(self.builder.build(task, dict(payload), **options))
            except DispatchError as exc:
                raise type(exc)(f"payload {index}: {exc.message}", exc.hint) from None
        refs: list[TaskRef | None] = []
        refused: list[str] = []
        for index, (message, refusal) in enumerate(self.broker.send_many(built)):
            if refusal is None:
                refs.append(TaskRef(message.message_id, message.queue_name, task, _lifecycle=self.lifecycle))
            else:
                refs.append(None)
                refused.append(f"payload {index} (held by {refusal.holder})")
        if refused:
            error = DuplicateTask(
                f"{task}: {len(refused)} of {len(refs)} not enqueued, a task with the same unique key is already "
                f"queued or running: {', '.join(refused[:10])}{' ...' if len(refused) > 10 else ''}"
            )
            error.refs = refs
            raise error
        return [ref for ref in refs if ref is not None]

    async def dispatch_async(
        self, task: str, /, *, triggered_by: str | None = None, **options_and_payload: Any
    ) -> TaskRef:
        """:meth:`dispatch` for an event loop (the API): the same arguments and checks, the enqueue awaited on
        asyncio Redis; ``triggered_by`` (a token's ``sub``) is kept with the task."""
        options, payload = _split(options_and_payload)
        return await self.dispatch_parts_async(task, payload, options, triggered_by)

    async def dispatch_parts_async(
        self, task: str, payload: dict[str, Any], options: dict[str, Any], triggered_by: str | None = None
    ) -> TaskRef:
        """:meth:`dispatch_async` with the payload and the dispatch options apart (the API's, which has them apart:
        no keyword mapping to build and split again). A payload field with a dispatch option's name is the option,
        as in :meth:`dispatch_async`."""
        if not DISPATCH_OPTION_NAMES.isdisjoint(payload):
            if clash := sorted(options.keys() & payload.keys()):
                raise DispatchError(f"{task}: {clash[0]!r} is given twice, as a dispatch option and in the payload")
            options, payload = _split({**options, **payload})
        workflow = self._workflow(task, options)
        if workflow is not None:  # a run writes its state first: the blocking path, off the loop
            return await asyncio.to_thread(self.start_workflow, workflow, payload, triggered_by)
        outgoing = self.builder.build(task, payload, triggered_by=triggered_by, **options)
        return self._ref(outgoing, *await self.broker.send_async(outgoing))

    def start_workflow(
        self, workflow: WorkflowSpec, payload: dict[str, Any], triggered_by: str | None = None
    ) -> TaskRef:
        """Start one run of ``workflow``; the returned id is the run's (see ``Queues.workflow``), the queue is its
        first step's."""
        workflow_id, messages = self.workflows.start(workflow, payload, triggered_by)
        return TaskRef(id=workflow_id, queue=messages[0].queue_name, task=workflow.name, _lifecycle=self.lifecycle)

    def _send(self, task: str, options: dict[str, Any], payload: dict[str, Any]) -> TaskRef:
        workflow = self._workflow(task, options)
        if workflow is not None:
            return self.start_workflow(workflow, payload)
        outgoing = self.builder.build(task, payload, **options)
        return self._ref(outgoing, *self.broker.send(outgoing))

    def _workflow(self, task: str, options: dict[str, Any]) -> WorkflowSpec | None:
        """The workflow ``task`` names (a task of the same name wins), refusing dispatch options it cannot take."""
        workflow = self.project.workflows.get(task)
        if workflow is None or task in self.project.tasks:
            return None
        if any(value is not None and value != "" for value in options.values()):
            raise DispatchError(f"{task}: a workflow takes only its payload (no delay, at, queue or options)")
        return workflow

    def _ref(self, outgoing: Outgoing, message: Any, refused: Any) -> TaskRef:
        if refused is not None:
            raise duplicate_error(outgoing.task, refused.holder)
        return TaskRef(id=message.message_id, queue=message.queue_name, task=outgoing.task, _lifecycle=self.lifecycle)


DISPATCH_OPTION_NAMES = frozenset(DISPATCH_OPTIONS)


def _split(arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Dispatch options and payload, from one keyword mapping (option names are never payload fields)."""
    options = {name: arguments[name] for name in DISPATCH_OPTIONS if name in arguments}
    payload = {name: value for name, value in arguments.items() if name not in DISPATCH_OPTIONS}
    return options, payload


class ClientTask(Generic[P, R]):
    """A handler that needs the worker's :class:`Client` (its settings, project, Redis): ``fn(client, **payload)``.

    The worker binds the client when it declares the task (:meth:`bind`), so the handler reads no global; its
    payload signature, which dispatch checks, is ``fn``'s without the first parameter.
    """

    def __init__(
        self,
        fn: Callable[Concatenate[Client, P], R],
        sensitive: tuple[str, ...] = (),
        validate: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.fn = fn
        functools.update_wrapper(self, fn)
        #: Payload paths the task always treats as sensitive, whatever jobs.yaml says (the loader reads this).
        self.jobkit_sensitive = sensitive
        #: Checks a payload when it is dispatched (the message builder calls it), raising PayloadError.
        self.validate_payload = validate
        signature = inspect.signature(fn)
        self.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])

    def bind(self, client: Client) -> Callable[P, R]:
        fn = self.fn

        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            return fn(client, *args, **kwargs)

        run.__name__ = fn.__name__
        run.__qualname__ = fn.__qualname__
        run.__module__ = fn.__module__
        run.__doc__ = fn.__doc__
        return run

    def __call__(self, client: Client, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(client, *args, **kwargs)


def needs_client(
    *, sensitive: tuple[str, ...] = (), validate: Callable[[dict[str, Any]], None] | None = None
) -> Callable[[Callable[Concatenate[Client, P], R]], ClientTask[P, R]]:
    """Decorator: ``@needs_client(sensitive=("token",)) def send_verification_email(client, to, name, token, ...)``.
    ``sensitive`` paths are sealed and masked whatever jobs.yaml declares; ``validate`` vets a payload at dispatch."""

    def wrap(fn: Callable[Concatenate[Client, P], R]) -> ClientTask[P, R]:
        return ClientTask(fn, sensitive, validate)

    return wrap
