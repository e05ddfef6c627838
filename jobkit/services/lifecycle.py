"""A task's life after dispatch, from Python: wait for its result, read its progress, cancel or archive it.

``ref.result(timeout=5)``, ``jobkit.result(task_id)``, ``ref.progress()``, ``ref.cancel()``, and the ``cancel`` and
``archive`` of ``jobkit.queues()`` all come here. A result is what the handler returned, kept on the completed task's
record for the task's ``retention`` (see :mod:`jobkit.engine.middleware.running_tasks`).

Waiting does not poll: the waiter subscribes to the task's ``K.finished(id)`` channel, then reads the task once, and
reads it again only when the channel says the task settled (the broker's ack, nack, cancel and archive steps publish
there; a workflow run publishes when it ends). An ack publishes a completion only for the ids waiters registered in
``K.waiters`` (a PUBLISH per task no one hears cost Redis a command a task), so a waiter registers after subscribing
and before reading. The read after registering closes the race with a task that finished just before.
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from typing import Any, cast

from dramatiq.message import Message

from jobkit.config.model import Project
from jobkit.engine.broker import JobkitBroker
from jobkit.engine.running import CANCELED_OPTION, PROGRESS_OPTION, RESULT_OPTION, RESULT_PROBLEM_OPTION
from jobkit.engine.sealing import Sealer
from jobkit.engine.workflows import WorkflowRuns
from jobkit.errors import (
    ResultMissing,
    ResultTimeout,
    TaskCanceled,
    TaskFailed,
    TaskNotFound,
    TaskStateError,
    UnknownQueue,
    did_you_mean,
)

__all__ = ["Lifecycle", "progress_record"]

#: The longest single wait on the channel (a wait without a timeout re-reads the task this often, at most).
_LONGEST_WAIT_S = 3600.0
#: How much longer than its wait a waiter's registration lasts (clocks of different hosts differ a little).
_WAITER_SLACK_S = 30.0


def progress_record(raw: Any) -> dict[str, Any] | None:
    """A progress record (JSON text from Redis, or the dict kept on a message) with ``updated_at`` in ISO 8601."""
    if raw is None:
        return None
    found = json.loads(raw) if isinstance(raw, bytes | str) else dict(raw)
    updated = found.get("updated_at")
    if updated:
        found["updated_at"] = datetime.fromtimestamp(updated / 1000, tz=UTC).isoformat(timespec="milliseconds")
    return cast(dict[str, Any], found)


class Lifecycle:
    """Results, progress, cancel and archive of one project's tasks on one broker."""

    def __init__(self, broker: JobkitBroker, project: Project, workflows: WorkflowRuns, sealer: Sealer | None) -> None:
        self.broker = broker
        self.project = project
        self.workflows = workflows
        self.sealer = sealer
        self.redis = broker.client
        self.keys = broker.keys

    def _call(self, command: str, queue: str, *args: Any) -> Any:
        if queue not in self.project.queues:
            hint = did_you_mean(queue, set(self.project.queues)) or "declared: " + ", ".join(self.project.queues)
            raise UnknownQueue(f"unknown queue {queue!r} ({hint})")
        return self.broker.lua.call("queues", command, int(time.time() * 1000), queue, *args)

    # -- results ---------------------------------------------------------------------------------------------------
    def result(self, task_id: str, queue: str | None = None, timeout: float | None = None) -> Any:
        """The return value of task (or workflow run) ``task_id``, once it completed; waits up to ``timeout``
        seconds (None: as long as it takes). Raises :class:`~jobkit.errors.TaskFailed` (archived, with its final
        error), :class:`~jobkit.errors.TaskCanceled`, :class:`~jobkit.errors.ResultMissing` (completed, nothing
        kept), :class:`~jobkit.errors.ResultTimeout`, or :class:`~jobkit.errors.TaskNotFound`."""
        is_workflow = bool(self.redis.exists(self.keys.workflow(task_id)))  # a run's id names its state hash
        deadline = None if timeout is None else time.monotonic() + timeout
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.keys.finished(task_id))
            registered_until = -math.inf  # (monotonic) how long this waiter's registration lasts
            while True:
                if not is_workflow and time.monotonic() >= registered_until:
                    registered_until = self._register_waiter(task_id, deadline)
                settled, value = self._run_outcome(task_id) if is_workflow else self._task_outcome(task_id, queue)
                if settled:
                    return value
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ResultTimeout(f"task {task_id!r} did not finish within {timeout:g}s")
                # Blocks until the channel says the task settled, or the deadline; the subscribe confirmation
                # returns at once (one more read of the task).
                pubsub.get_message(timeout=min(remaining or _LONGEST_WAIT_S, _LONGEST_WAIT_S))
        finally:
            pubsub.close()

    def _register_waiter(self, task_id: str, deadline: float | None) -> float:
        """Say that a caller waits for ``task_id`` until ``deadline`` (monotonic; None: the longest single wait), after
        subscribing and before reading the task: an ack publishes a completion only for the ids registered in
        ``K.waiters``, so one that comes after this sees it, and one before it is found by the read. A later
        deadline replaces an earlier one, never the other way round; the ack that publishes removes the entry, and
        entries nobody heard expire (the broker's maintenance). A waiter that gives up leaves its entry: another one
        may wait for the same task. Returns until when (monotonic) the registration holds."""
        wait = _LONGEST_WAIT_S if deadline is None else min(_LONGEST_WAIT_S, max(0.0, deadline - time.monotonic()))
        until_ms = int((time.time() + wait + _WAITER_SLACK_S) * 1000)
        self.redis.zadd(self.keys.waiters, {task_id: until_ms}, gt=True)
        return time.monotonic() + wait

    def _task_outcome(self, task_id: str, queue: str | None) -> tuple[bool, Any]:
        state, message = self._find(task_id, queue)
        options = message.options
        if state == "completed":
            if RESULT_OPTION in options:
                return True, self._opened(message.actor_name, options[RESULT_OPTION])
            problem = options.get(RESULT_PROBLEM_OPTION)
            if problem:
                raise ResultMissing(f"task {task_id!r} completed, but {problem}")
            return True, None
        if state == "archived":
            by = options.get(CANCELED_OPTION)
            if by is not None:
                raise TaskCanceled(f"task {task_id!r} was canceled by {by}", by=by)
            error = options.get("last_error")
            raise TaskFailed(f"task {task_id!r} failed: {error or 'archived'}", last_error=error)
        return False, None

    def _find(self, task_id: str, queue: str | None) -> tuple[str, Message[Any]]:
        for name in [queue] if queue else list(self.project.queues):
            found = self._call("task", name, task_id)
            if found[0] != b"missing":
                return found[0].decode(), Message.decode(found[3])
        where = f"queue {queue!r}" if queue else "any queue"
        raise TaskNotFound(
            f"no task {task_id!r} in {where}: it was deleted, its retention ran out, or it completed with "
            "retention 0 (nothing kept)"
        )

    def _opened(self, task: str, value: Any) -> Any:
        """A kept result as the caller's code gets it: sensitive fields opened (``jobkit task`` and the API show
        them as "***")."""
        spec = self.project.tasks.get(task)
        if spec is not None and spec.sensitive and isinstance(value, dict) and self.sealer is not None:
            return self.sealer.open(value, spec.sensitive)
        return value

    def _run_outcome(self, workflow_id: str) -> tuple[bool, Any]:
        info = self.workflows.info(workflow_id)
        if info is None:
            raise TaskNotFound(f"no workflow run {workflow_id!r} (it may have expired)")
        status = info["status"]
        if status == "completed":
            return True, info["result"]
        if status == "canceled":
            raise TaskCanceled(f"workflow run {workflow_id!r} was {info['error']}")
        if status == "failed":
            raise TaskFailed(
                f"workflow run {workflow_id!r} failed at step {info['failed_step']}: {info['error']}",
                last_error=info["error"],
            )
        return False, None

    # -- progress --------------------------------------------------------------------------------------------------
    def progress(self, task_id: str, queue: str | None = None) -> dict[str, Any] | None:
        """What the handler last reported with ``jobkit.progress()``, or None."""
        state, message = self._find(task_id, queue)
        if state == "active":
            live = self.redis.get(self.keys.progress(message.queue_name, task_id))
            if live is not None:
                return progress_record(live)
        return progress_record(message.options.get(PROGRESS_OPTION))

    # -- cancel and archive ----------------------------------------------------------------------------------------
    def cancel(self, task_id: str, queue: str, by: str = "python") -> str:
        """Cancel a task; returns the state it was in. A pending, scheduled or retry task is archived as canceled at
        once; a running one (or one a worker holds, about to start) is interrupted within a second by the worker
        that holds it and then archived as canceled. Never retried; ``canceled_by`` says who asked."""
        found = self._call("cancel", queue, task_id, by)
        state, outcome = found[0].decode(), found[1].decode()
        if outcome == "done":
            self.workflows.member_archived(Message.decode(found[2]))  # a canceled step stops its run
            return str(state)
        if outcome == "told":
            return "active" if state == "held" else str(state)
        if state == "missing":
            raise TaskNotFound(f"no task {task_id!r} in queue {queue!r}")
        raise TaskStateError(f"task {task_id!r} is {state}; only a task that has not finished can be canceled")

    def archive(self, task_id: str, queue: str, by: str = "python") -> str:
        """Archive a pending, scheduled or retry task where it is (it stays inspectable and can be retried);
        returns the state it was in."""
        found = self._call("archive", queue, task_id, by)
        state, outcome = found[0].decode(), found[1].decode()
        if outcome == "done":
            self.workflows.member_archived(Message.decode(found[2]))
            return str(state)
        if state == "missing":
            raise TaskNotFound(f"no task {task_id!r} in queue {queue!r}")
        if state == "held":
            raise TaskStateError(f"task {task_id!r} was already handed to a worker; cancel it instead")
        raise TaskStateError(
            f"task {task_id!r} is {state}; only pending, scheduled or retry tasks can be archived"
            + (" (cancel a running one)" if state == "active" else "")
        )
