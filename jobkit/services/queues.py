"""Queue statistics and task operations: ``jobkit.queues()``, and the service the CLI, the API and the dashboard
share.

Every figure comes from a bounded number of Redis calls per queue (counters and container sizes, never a scan of
messages), and every operation is one atomic step of the ``queues`` Lua script.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, TypeGuard, cast

from dramatiq.message import Message

from jobkit.config.model import DRAMATIQ_RETRY
from jobkit.engine.messages import TRIGGERED_BY_OPTION, duplicate_error
from jobkit.engine.running import CANCELED_OPTION, PROGRESS_OPTION, RESULT_OPTION
from jobkit.engine.sealing import redact
from jobkit.errors import InvalidRequest, JobkitError, TaskNotFound, TaskStateError, UnknownQueue, did_you_mean
from jobkit.services.client import Client
from jobkit.services.lifecycle import progress_record
from jobkit.services.limits import describe_limits
from jobkit.services.redaction import redacted_payload

__all__ = ["BULK_ACTIONS", "BULK_MAX", "STATES", "BulkOutcome", "QueueStats", "Queues", "State", "TaskInfo"]

State = Literal["pending", "active", "scheduled", "retry", "archived", "completed"]
STATES: tuple[State, ...] = ("pending", "active", "scheduled", "retry", "archived", "completed")
_Rows = list[tuple[str, Any, bytes]]
_Names = list[str]
_Raw = list[Any]
_History = list[dict[str, Any]]
_Reasons = list[str | None]
_DAY_MS = 86_400_000
_UNSET = object()
#: What a bulk request may do to a selection or a whole state ("retry" is "run": a task runs now).
BULK_ACTIONS = ("run", "retry", "delete", "archive")
#: The most task ids one bulk request may name.
BULK_MAX = 10_000
_RUNNABLE = ("scheduled", "retry", "archived")
#: Tasks one Lua call deletes or archives when a whole state goes: Redis is never held long by a large set.
_STATE_BATCH = 1_000


def _iso(ms: Any) -> str | None:
    """Epoch milliseconds (number, text or bytes from Redis) -> ISO 8601 UTC; None for nothing."""
    if ms is None or ms in ("", b""):
        return None
    return datetime.fromtimestamp(float(ms) / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _is_state(value: str) -> TypeGuard[State]:
    return value in STATES


@dataclass(frozen=True)
class QueueStats:
    queue: str
    pending: int
    """Waiting to start: in the queue, or prefetched by a worker and not yet running."""
    active: int
    """Running now."""
    scheduled: int
    retry: int
    archived: int
    completed: int
    """Completed and still within their retention."""
    paused: bool
    size: int
    """pending + active + scheduled + retry (archived and completed are not counted)."""
    latency_ms: int
    """Age of the oldest task waiting in the queue (0 when none waits)."""
    processed: int
    """Attempts finished today (UTC), succeeded or failed."""
    failed: int
    """Attempts failed today (UTC)."""
    processed_total: int
    failed_total: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TaskInfo:
    id: str
    queue: str
    task: str
    state: State
    payload: dict[str, Any]
    retried: int
    max_retries: int
    last_error: str | None
    last_failed_at: str | None
    next_process_at: str | None
    completed_at: str | None
    enqueued_at: str | None
    triggered_by: str | None = None
    """The ``sub`` of the API token that triggered the task (None for tasks dispatched otherwise)."""
    result: Any = None
    """The handler's return value (completed tasks, while retained), sensitive fields as "***"."""
    canceled_by: str | None = None
    """Who canceled the task (an API token's ``sub``, ``cli:<user>``, ``python``); None unless canceled."""
    progress: dict[str, Any] | None = None
    """What the handler last reported with ``jobkit.progress()``: ``done``, ``total``, ``percent``, ``note``,
    ``updated_at`` (ISO 8601); None if it never did."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BulkFailure:
    task_id: str
    detail: str
    """Why this task was left as it was (the same sentence the one-task operation answers)."""


@dataclass(frozen=True)
class BulkOutcome:
    """What a bulk action did: how many tasks it changed, and each task it could not change and why."""

    queue: str
    action: str
    done: int
    failed: list[BulkFailure] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_StatsList = list[QueueStats]
_Infos = list[TaskInfo]


class Queues:
    """``jobkit.queues()``: stats, pause/resume and task operations on the project's queues."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.redis = client.redis
        self.keys = client.keys
        self._lua = client.broker.lua

    # -- queues ----------------------------------------------------------------------------------------------------
    def list(self) -> list[str]:
        """Declared queues, heaviest first."""
        return self.client.project.queue_names()

    def check(self, name: str) -> str:
        if name not in self.client.project.queues:
            hint = did_you_mean(name, set(self.client.project.queues)) or "declared: " + ", ".join(self.list())
            raise UnknownQueue(f"unknown queue {name!r} ({hint})")
        return name

    def _call(self, command: str, queue: str, *args: Any, client: Any = None) -> Any:
        return self._lua.call("queues", command, int(time.time() * 1000), queue, *args, client=client)

    def stats(self, name: str) -> QueueStats:
        return self.all_stats([self.check(name)])[0]

    def all_stats(self, names: _Names | None = None) -> _StatsList:
        """Stats of several queues in one round trip."""
        names = self.list() if names is None else names
        now_ms = int(time.time() * 1000)
        calls = [["stats", now_ms, name, now_ms // _DAY_MS] for name in names]
        replies = self._lua.call_pipelined("queues", calls)
        return [self._stats(name, raw, now_ms) for name, raw in zip(names, replies, strict=True)]

    @staticmethod
    def _stats(name: str, raw: _Raw, now_ms: int) -> QueueStats:
        listed, held_or_waiting, active, scheduled, retry, archived, completed, paused = (int(v) for v in raw[:8])
        processed, failed, processed_total, failed_total = (int(v) for v in raw[8:12])
        pending = max(0, held_or_waiting - scheduled - retry - active)
        scheduled += int(raw[14])  # a stock producer's delayed messages that no worker has taken over yet
        latency = 0
        if listed and raw[12]:
            waiting_since = max(int(raw[12]), int(raw[13] or 0))
            latency = max(0, now_ms - waiting_since)
        return QueueStats(
            queue=name,
            pending=pending,
            active=active,
            scheduled=scheduled,
            retry=retry,
            archived=archived,
            completed=completed,
            paused=bool(paused),
            size=pending + active + scheduled + retry,
            latency_ms=latency,
            processed=processed,
            failed=failed,
            processed_total=processed_total,
            failed_total=failed_total,
        )

    def history(self, days: int = 7) -> _History:
        """Processed and failed per queue per day (UTC), oldest day first; kept 90 days."""
        days = max(1, min(days, 90))
        today = int(time.time() * 1000) // _DAY_MS
        numbers = list(range(today - days + 1, today + 1))
        keys = [
            key
            for name in self.list()
            for day in numbers
            for key in (self.keys.processed_day(name, day), self.keys.failed_day(name, day))
        ]
        values = iter(int(v or 0) for v in cast(list[Any], self.redis.mget(keys)))
        rows = []
        for name in self.list():
            for day in numbers:
                rows.append(
                    {
                        "queue": name,
                        "date": (date(1970, 1, 1) + timedelta(days=day)).isoformat(),
                        "processed": next(values),
                        "failed": next(values),
                    }
                )
        return rows

    def pause(self, name: str) -> None:
        """Workers stop starting this queue's tasks within a second; nothing is dropped."""
        self.redis.sadd(self.keys.paused, self.check(name))

    def resume(self, name: str) -> None:
        queue = self.check(name)
        pipe = self.redis.pipeline(transaction=False)
        pipe.srem(self.keys.paused, queue)
        pipe.rpush(self.keys.wakeup(queue), 1)  # its idle consumers look at once (else at their next idle wait)
        pipe.execute()

    def delete_all_pending(self, name: str) -> int:
        return int(self._call("delete_all_pending", self.check(name)))

    def archive_all_pending(self, name: str) -> int:
        return int(self._call("archive_all_pending", self.check(name)))

    def delete_all_archived(self, name: str) -> int:
        return int(self._call("delete_all_archived", self.check(name)))

    def run_all(self, name: str, state: Literal["scheduled", "retry", "archived"]) -> int:
        """Every scheduled, retry or archived task of the queue runs now (archived ones with a fresh budget)."""
        self.check(name)
        if state in ("scheduled", "retry"):
            return int(self._call("run_all", name, state))
        if state != "archived":
            raise TaskStateError(f"run all applies to scheduled, retry or archived tasks, not {state!r}")
        count = skipped = 0
        while True:  # newest first; tasks whose unique lock another task holds stay archived, and are skipped
            _, rows = self._list(name, "archived", skipped, skipped + 499)
            if not rows:
                return count
            for rid, _score, data in rows:
                message = Message.decode(data)
                outcome = self._run(name, message.message_id, "archived", rid, message)
                count, skipped = (count + 1, skipped) if outcome[1] else (count, skipped + 1)

    # -- tasks -----------------------------------------------------------------------------------------------------
    def task(self, name: str, task_id: str) -> TaskInfo:
        return self.task_with_message(name, task_id)[0]

    def task_with_message(self, name: str, task_id: str) -> tuple[TaskInfo, Message[Any]]:
        """:meth:`task` and the stored message itself (sensitive fields sealed), for services that need more."""
        found = self._call("task", self.check(name), task_id)
        if found[0] == b"missing":
            raise TaskNotFound(f"no task {task_id!r} in queue {name!r}")
        state: State = found[0].decode()
        live = cast(bytes | None, self.redis.get(self.keys.progress(name, task_id))) if state == "active" else None
        message = Message.decode(found[3])
        return self._info(name, state, found[2], message, live), message

    def tasks(self, name: str, state: str = "pending", page: int = 1, size: int = 20) -> tuple[int, _Infos]:
        """One page of a queue's tasks in a state: (total in that state, tasks)."""
        if not _is_state(state):
            raise TaskStateError(
                f"unknown state {state!r} ({did_you_mean(state, set(STATES)) or 'one of ' + ', '.join(STATES)})"
            )
        page, size = max(1, page), max(1, min(size, 1000))
        start = (page - 1) * size
        total, rows = self._list(self.check(name), state, start, start + size - 1)
        rows = [row for row in rows if row[2]]
        if state != "active":
            return total, [self._info(name, state, score, data) for _rid, score, data in rows]
        # A small hash read whole: order by start time and page here; progress comes in one MGET.
        rows = sorted(rows, key=lambda row: float(row[1]))[start : start + size]
        infos = [self._info(name, state, score, data) for _rid, score, data in rows]
        if not infos:
            return total, infos
        live = cast(list[bytes | None], self.redis.mget([self.keys.progress(name, info.id) for info in infos]))
        pairs = zip(infos, live, strict=True)
        return total, [replace(info, progress=progress_record(raw)) if raw else info for info, raw in pairs]

    def delete(self, name: str, task_id: str) -> str:
        """Delete a pending, scheduled, retry, archived or completed task; returns the state it was in."""
        state, deleted = self._call("delete", self.check(name), task_id)  # a unique task's lock ends with it
        state = state.decode()
        if deleted:
            return str(state)
        if state == "missing":
            raise TaskNotFound(f"no task {task_id!r} in queue {name!r}")
        if state == "held":
            raise TaskStateError(
                f"task {task_id!r} was already handed to a worker and starts shortly; it cannot be deleted"
            )
        raise TaskStateError(f"task {task_id!r} is {state}; a running task cannot be deleted")

    def cancel(self, name: str, task_id: str, by: str = "python") -> str:
        """Cancel a task; returns the state it was in. A pending, scheduled or retry task is archived as canceled at
        once; a running one (or one a worker holds, about to start) is interrupted within a second by the worker
        that holds it, then archived as canceled. Never retried; ``canceled_by`` says who asked."""
        return self.client.lifecycle.cancel(task_id, self.check(name), by)

    def archive(self, name: str, task_id: str, by: str = "python") -> str:
        """Archive a pending, scheduled or retry task where it is (it stays inspectable and can be retried);
        returns the state it was in."""
        return self.client.lifecycle.archive(task_id, self.check(name), by)

    def retry(self, name: str, task_id: str) -> str:
        """Run a scheduled, retry or archived task now (an archived one with a fresh retry budget)."""
        found = self._call("task", self.check(name), task_id)
        state = found[0].decode()
        if state == "missing":
            raise TaskNotFound(f"no task {task_id!r} in queue {name!r}")
        if state not in ("scheduled", "retry", "archived"):
            raise TaskStateError(f"task {task_id!r} is {state}; only scheduled, retry or archived tasks can run now")
        result = self._run(name, task_id, state, found[1], Message.decode(found[3]))
        if not result[1]:
            if result[0] == b"held":
                raise duplicate_error(Message.decode(found[3]).actor_name, result[2].decode())
            raise TaskStateError(f"task {task_id!r} changed state ({result[0].decode()}) while being retried")
        return str(state)

    def _run(self, name: str, task_id: str, state: str, rid: Any, message: Message[Any], client: Any = None) -> Any:
        """One task runs now; an archived one with a fresh retry budget and its unique lock taken again."""
        claims: tuple[Any, ...] = ()
        if state == "archived":
            message, claims = self.client.builder.rerun(message)
        claim_args: list[Any] = [len(claims)] + [part for claim in claims for part in (claim.key, claim.ttl_ms)]
        return self._call("run", name, task_id, state, rid, message.encode(), *claim_args, client=client)

    # -- many tasks at once ----------------------------------------------------------------------------------------
    def delete_all(self, name: str, state: str) -> int:
        """Delete every task of a queue in ``state`` (any state but active); returns how many."""
        self.check(name)
        if state == "pending":
            return self.delete_all_pending(name)
        if state == "archived":
            return self.delete_all_archived(name)
        if state in ("scheduled", "retry", "completed"):
            return self._drain("delete_state", name, state)
        raise TaskStateError(f"state: {_state_text(state)} cannot be deleted (a running task cannot be deleted)")

    def archive_all(self, name: str, state: str) -> int:
        """Archive every pending, scheduled or retry task of a queue; returns how many."""
        self.check(name)
        if state == "pending":
            return self.archive_all_pending(name)
        if state in ("scheduled", "retry"):
            return self._drain("archive_state", name, state)
        raise TaskStateError(f"state: {_state_text(state)} cannot be archived (only pending, scheduled or retry ones)")

    def bulk_state(self, name: str, action: str, state: str) -> BulkOutcome:
        """``action`` (run/retry, delete, archive) on every task of a queue in ``state``, in one call."""
        _check_action(action)
        if action in ("run", "retry"):
            if state not in _RUNNABLE:
                raise TaskStateError(f"state: {_state_text(state)} cannot run now (only scheduled, retry or archived)")
            done = self.run_all(name, cast(Literal["scheduled", "retry", "archived"], state))
        elif action == "delete":
            done = self.delete_all(name, state)
        else:
            done = self.archive_all(name, state)
        return BulkOutcome(name, action, done)

    def bulk(self, name: str, action: str, ids: Sequence[str], by: str = "python") -> BulkOutcome:
        """``action`` (run/retry, delete, archive) on each of ``ids`` of one queue: one round trip per step for all of
        them, each task changed atomically; a task that cannot be changed is listed with the reason."""
        _check_action(action)
        self.check(name)
        ids = [*dict.fromkeys(ids)]
        if len(ids) > BULK_MAX:
            raise InvalidRequest(f"ids: at most {BULK_MAX} task ids per request, found {len(ids)}")
        reasons: _Reasons
        if action in ("run", "retry"):
            reasons = self._run_many(name, ids)
        else:
            pipe = self.redis.pipeline(transaction=False)
            for task_id in ids:
                self._call(action, name, task_id, *((by,) if action == "archive" else ()), client=pipe)
            reasons = []
            for task_id, reply in zip(ids, pipe.execute(), strict=True):
                changed = reply[1] == b"done" if action == "archive" else bool(reply[1])
                reasons.append(None if changed else str(_refusal(action, name, task_id, reply[0].decode())))
                if changed and action == "archive":
                    self.client.workflows.member_archived(Message.decode(reply[2]))  # an archived step stops its run
        failed = [BulkFailure(task_id, reason) for task_id, reason in zip(ids, reasons, strict=True) if reason]
        return BulkOutcome(name, action, len(ids) - len(failed), failed)

    def _run_many(self, name: str, ids: _Names) -> _Reasons:
        pipe = self.redis.pipeline(transaction=False)
        for task_id in ids:
            self._call("task", name, task_id, client=pipe)
        reasons: _Reasons = [None] * len(ids)
        started: list[tuple[int, Message[Any]]] = []
        pipe_runs = self.redis.pipeline(transaction=False)
        for index, (task_id, found) in enumerate(zip(ids, pipe.execute(), strict=True)):
            state = found[0].decode()
            if state not in _RUNNABLE:
                reasons[index] = str(_refusal("run", name, task_id, state))
                continue
            message = Message.decode(found[3])
            self._run(name, task_id, state, found[1], message, client=pipe_runs)
            started.append((index, message))
        for (index, message), result in zip(started, pipe_runs.execute() if started else [], strict=True):
            if not result[1]:
                if result[0] == b"held":
                    reasons[index] = str(duplicate_error(message.actor_name, result[2].decode()))
                else:
                    reasons[index] = f"task {ids[index]!r} changed state ({result[0].decode()}) while being retried"
        return reasons

    def _drain(self, command: str, name: str, state: str) -> int:
        total = 0
        while True:
            count = int(self._call(command, name, state, _STATE_BATCH))
            total += count
            if count < _STATE_BATCH:
                return total

    # -- flow control and workflows ---------------------------------------------------------------------------------
    def limits(self, task: str) -> dict[str, Any]:
        """The unique / rate_limit / concurrency settings of a task and their current use."""
        return describe_limits(self.client, self.client.task_spec(task))

    def workflow(self, workflow_id: str) -> dict[str, Any]:
        """A workflow run's state and its steps' states (see :meth:`jobkit.engine.workflows.WorkflowRuns.info`)."""
        info = self.client.workflows.info(workflow_id)
        if info is None:
            raise TaskNotFound(f"no workflow {workflow_id!r} (it may have expired)")
        return info

    def describe(self, name: str, state: State, score: Any, data: bytes) -> TaskInfo:
        """The task a stored message of queue ``name`` is, as readers see it (sensitive fields "***")."""
        return self._info(name, state, score, data)

    # -- helpers ---------------------------------------------------------------------------------------------------
    def _list(self, name: str, state: str, start: int, stop: int) -> tuple[int, _Rows]:
        raw = self._call("list", name, state, start, stop)
        rows = [(raw[i].decode(), raw[i + 1], raw[i + 2]) for i in range(1, len(raw), 3)]
        return int(raw[0]), rows

    def _max_retries(self, message: Message[Any]) -> int:
        """The message's own ``max_retries``, else its task's, else its actor's (a plain Dramatiq actor declared in
        this process), else Dramatiq's default; -1 for no limit."""
        found = message.options.get("max_retries", _UNSET)
        if found is _UNSET:
            spec = self.client.project.tasks.get(message.actor_name)
            actor = self.client.broker.actors.get(message.actor_name)
            if spec is not None:
                found = spec.retry.max_retries
            elif actor is not None:
                found = actor.options.get("max_retries", DRAMATIQ_RETRY.max_retries)
            else:
                found = DRAMATIQ_RETRY.max_retries
        return int(found) if found is not None else -1

    def _info(
        self, name: str, state: State, score: Any, data: bytes | Message[Any], live: bytes | None = None
    ) -> TaskInfo:
        message = data if isinstance(data, Message) else Message.decode(data)
        options = message.options
        result = options.get(RESULT_OPTION) if state == "completed" else None
        spec = self.client.project.tasks.get(message.actor_name)
        if spec is not None and spec.sensitive and isinstance(result, dict):
            result = redact(result, spec.sensitive)
        retries = int(options.get("retries", 0))
        if options.get("jobkit_exhausted"):
            retries -= 1  # Dramatiq counts the final failure in ``retries`` too; this is the retries made
        next_at = _iso(score) if state in ("scheduled", "retry") and score not in (None, b"") else None
        return TaskInfo(
            id=message.message_id,
            queue=name,
            task=message.actor_name,
            state=state,
            payload=redacted_payload(self.client.project, message.actor_name, message.kwargs),
            retried=max(0, retries),
            max_retries=self._max_retries(message),
            last_error=options.get("last_error"),
            last_failed_at=_iso(options.get("last_failed_at")),
            next_process_at=next_at,
            completed_at=_iso(options.get("completed_at")),
            enqueued_at=_iso(message.message_timestamp),
            triggered_by=options.get(TRIGGERED_BY_OPTION),
            result=result,
            canceled_by=options.get(CANCELED_OPTION),
            progress=progress_record(live) if live else progress_record(options.get(PROGRESS_OPTION)),
        )


def _check_action(action: str) -> None:
    if action not in BULK_ACTIONS:
        hint = did_you_mean(action, set(BULK_ACTIONS)) or "one of " + ", ".join(BULK_ACTIONS)
        raise InvalidRequest(f"action: unknown action {action!r} ({hint})")


def _state_text(state: str) -> str:
    return f"{state} tasks" if _is_state(state) else f"unknown state {state!r} (one of {', '.join(STATES)})"


def _refusal(action: str, name: str, task_id: str, state: str) -> JobkitError:
    """Why ``action`` left task ``task_id`` (found in ``state``) as it was."""
    verb = {"run": "run now", "retry": "run now", "delete": "be deleted", "archive": "be archived"}[action]
    if state == "missing":
        return TaskNotFound(f"no task {task_id!r} in queue {name!r}")
    if state == "held":
        return TaskStateError(f"task {task_id!r} was already handed to a worker and starts shortly; it cannot {verb}")
    if action in ("run", "retry"):
        return TaskStateError(f"task {task_id!r} is {state}; only scheduled, retry or archived tasks can run now")
    if action == "archive":
        if state == "active":
            return TaskStateError(f"task {task_id!r} is active; a running task cannot be archived")
        return TaskStateError(f"task {task_id!r} is {state}; only pending, scheduled or retry tasks can be archived")
    return TaskStateError(f"task {task_id!r} is {state}; a running task cannot be deleted")
