"""Workflows: a chain of steps, each one task or a group of tasks run in parallel, the results passed along.

``workflows:`` in jobs.yaml, or ``jobkit.chain(...)`` / ``jobkit.group(...)`` in Python. A step's payload is a
template over ``input`` (the payload the workflow was dispatched with) and ``prev`` (the previous step's result;
after a group, the list of its results in declaration order).

State lives in one Redis hash per run, ``{ns}:wf:<id>``; each step's messages carry ``jobkit_wf = [id, step, member]``
in their options. :class:`WorkflowSteps` records each step's outcome and starts the next step when the last member of
the current one completes. A step whose task is archived stops the chain (the workflow says which step failed and
why); retrying that task (``jobkit retry``) resumes it, because its message still carries the workflow reference.

Dramatiq's own pipelines and group callbacks are not used: group callbacks do not hand the group's results to the
next step, and a pipeline keeps no state that could say which step failed.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import redis
from dramatiq import Broker, Middleware
from dramatiq.message import Message

from .errors import DispatchError
from .model import WorkflowSpec, WorkflowStep
from .placeholders import TemplateError, render

__all__ = ["Chain", "WorkflowSteps", "chain", "group", "start_workflow", "workflow_info"]

#: A workflow's state stays inspectable this long after its last change.
STATE_TTL_S = 7 * 86_400
_ERROR_CHARS = 2000

# KEYS: state hash. ARGV: step, member, result JSON, group size. Records a member's result once (a redelivered
# message does not count twice) and returns how many members of the step have completed, or -1 if already recorded.
_COMPLETE_LUA = """
if redis.call("hsetnx", KEYS[1], "r:" .. ARGV[1] .. ":" .. ARGV[2], ARGV[3]) == 0 then
    return -1
end
redis.call("hset", KEYS[1], "m:" .. ARGV[1] .. ":" .. ARGV[2], "completed")
return redis.call("hincrby", KEYS[1], "n:" .. ARGV[1], 1)
"""

StepItem = str | tuple[str, Mapping[str, Any]] | WorkflowStep


def state_key(namespace: str, workflow_id: str) -> str:
    return f"{namespace}:wf:{workflow_id}"


# -- building workflows in Python --------------------------------------------------------------------------------------
def _task_item(item: StepItem) -> tuple[str, Mapping[str, Any]]:
    if isinstance(item, str):
        return item, {}
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], Mapping):
        return item[0], dict(item[1])
    raise DispatchError(f"a step is a task name, a (task, payload) pair or a group, not {item!r}")


def group(*tasks: str | tuple[str, Mapping[str, Any]]) -> WorkflowStep:
    """Tasks run in parallel as one step; the next step's ``prev`` is the list of their results."""
    if len(tasks) < 2:
        raise DispatchError("a group needs at least 2 tasks")
    return WorkflowStep(tuple(_task_item(task) for task in tasks), group=True)


@dataclass(frozen=True)
class Chain:
    """A workflow built in Python; ``dispatch(**input)`` starts one run of it."""

    spec: WorkflowSpec

    def dispatch(self, **payload: Any) -> Any:
        from .client import get_client

        return get_client().start_workflow(self.spec, payload)


def chain(*steps: StepItem, name: str = "chain") -> Chain:
    """``chain(("a:fetch", {"n": 3}), group("b:x", "b:y"), ("c:sum", {"values": "{{ prev }}"}))``."""
    if not steps:
        raise DispatchError("a chain needs at least one step")
    built = tuple(step if isinstance(step, WorkflowStep) else WorkflowStep((_task_item(step),)) for step in steps)
    return Chain(WorkflowSpec(name, built))


# -- running ---------------------------------------------------------------------------------------------------------
def _definition(spec: WorkflowSpec) -> str:
    steps = [
        {"group": step.group, "tasks": [[task, dict(payload)] for task, payload in step.tasks]} for step in spec.steps
    ]
    return json.dumps({"name": spec.name, "steps": steps})


def _enqueue_step(
    broker: Broker,
    client: redis.Redis,
    key: str,
    workflow_id: str,
    definition: dict[str, Any],
    index: int,
    context: dict[str, Any],
) -> list[Message[Any]]:
    """Render and enqueue every task of step ``index``; raises TemplateError before enqueuing anything."""
    step = definition["steps"][index]
    messages: list[Message[Any]] = []
    for member, (task, template) in enumerate(step["tasks"]):
        payload = render(template, context)
        if not isinstance(payload, dict):
            raise TemplateError(f"the payload of {task} is not a mapping")
        actor = broker.get_actor(task)
        options = {"jobkit_wf": [workflow_id, index, member]}
        messages.append(Message(queue_name=actor.queue_name, actor_name=task, args=(), kwargs=payload, options=options))
    fields: dict[str, Any] = {"step": index, "updated_at": int(time.time() * 1000)}
    for member, message in enumerate(messages):
        fields[f"t:{index}:{member}"] = message.message_id
        fields[f"q:{index}:{member}"] = message.queue_name
        fields[f"m:{index}:{member}"] = "pending"
    client.hset(key, mapping=cast(Any, fields))
    client.expire(key, STATE_TTL_S)
    for message in messages:
        broker.enqueue(message)
    return messages


def start_workflow(
    broker: Broker,
    client: redis.Redis,
    namespace: str,
    spec: WorkflowSpec,
    payload: dict[str, Any],
    check: Callable[[str, dict[str, Any]], None] | None = None,
) -> tuple[str, list[Message[Any]]]:
    """Start one run: returns its id and the first step's messages. ``check`` vets each rendered first payload."""
    workflow_id = uuid.uuid4().hex
    definition = json.loads(_definition(spec))
    context = {"input": payload}
    if check is not None:
        for task, template in spec.steps[0].tasks:
            try:
                rendered = render(template, context)
            except TemplateError as exc:
                raise DispatchError(f"{spec.name}: step 1 ({task}): {exc}") from None
            check(task, rendered)
    key = state_key(namespace, workflow_id)
    client.hset(
        key,
        mapping={
            "name": spec.name,
            "def": json.dumps(definition),
            "input": json.dumps(payload),
            "status": "running",
            "created_at": int(time.time() * 1000),
        },
    )
    try:
        messages = _enqueue_step(broker, client, key, workflow_id, definition, 0, context)
    except TemplateError as exc:
        client.delete(key)
        raise DispatchError(f"{spec.name}: step 1: {exc}") from None
    return workflow_id, messages


# A member starts. The run is "running" again only if nothing failed, or if this is the failed task being retried
# (that resumes the run); a sibling starting after another member failed must not wipe out that failure.
_START_LUA = """
local key, step, member, message_id = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
redis.call("hset", key, "m:" .. step .. ":" .. member, "running", "t:" .. step .. ":" .. member, message_id)
local failed = redis.call("hget", key, "failed_task")
if not failed or failed == message_id then
    redis.call("hset", key, "status", "running", "step", step)
    redis.call("hdel", key, "failed_step", "error", "failed_task", "failed_queue")
end
return 1
"""


class WorkflowSteps(Middleware):
    """Records each step's outcome in the workflow's state and starts the next step when one completes."""

    @staticmethod
    def _ref(message: Any) -> tuple[str, int, int] | None:
        ref = message.options.get("jobkit_wf")
        if not ref:
            return None
        return str(ref[0]), int(ref[1]), int(ref[2])

    @staticmethod
    def _key(broker: Broker, workflow_id: str) -> str:
        return state_key(broker.namespace, workflow_id)  # type: ignore[attr-defined]

    def before_process_message(self, broker: Broker, message: Any) -> None:
        ref = self._ref(message)
        if ref is None:
            return
        workflow_id, step, member = ref
        client: redis.Redis = broker.client  # type: ignore[attr-defined]
        client.eval(_START_LUA, 1, self._key(broker, workflow_id), step, member, message.message_id)

    def after_process_message(
        self, broker: Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        ref = self._ref(message)
        if ref is None:
            return
        workflow_id, step, member = ref
        client: redis.Redis = broker.client  # type: ignore[attr-defined]
        key = self._key(broker, workflow_id)
        if exception is not None:
            # Failed attempt; whether it retries or is archived is known in after_nack (Retries runs after us).
            client.hset(key, f"m:{step}:{member}", "retry")
            return
        raw = cast(list[bytes | None], client.hmget(key, ["def", "input"]))
        if raw[0] is None:
            return  # the state expired or was deleted: nothing to continue
        definition = json.loads(raw[0])
        size = len(definition["steps"][step]["tasks"])
        done = int(client.eval(_COMPLETE_LUA, 1, key, step, member, json.dumps(result, default=str), size))
        if done != size:
            return
        stored = cast(list[bytes | None], client.hmget(key, [f"r:{step}:{m}" for m in range(size)]))
        results = [json.loads(r or b"null") for r in stored]
        previous = results if definition["steps"][step]["group"] else results[0]
        nxt = step + 1
        if nxt == len(definition["steps"]):
            client.hset(
                key,
                mapping={"status": "completed", "result": json.dumps(previous), "finished_at": int(time.time() * 1000)},
            )
            return
        context = {"input": json.loads(raw[1] or b"{}"), "prev": previous}
        try:
            _enqueue_step(broker, client, key, workflow_id, definition, nxt, context)
        except (TemplateError, KeyError) as exc:
            client.hset(
                key,
                mapping={
                    "status": "failed",
                    "failed_step": nxt,
                    "error": f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS],
                },
            )

    def after_nack(self, broker: Broker, message: Any) -> None:
        ref = self._ref(message)
        if ref is None:
            return
        workflow_id, step, member = ref
        broker.client.hset(  # type: ignore[attr-defined]
            self._key(broker, workflow_id),
            mapping={
                f"m:{step}:{member}": "failed",
                "status": "failed",
                "failed_step": step,
                "failed_task": message.message_id,
                "failed_queue": message.queue_name,
                "error": str(message.options.get("last_error", "archived"))[:_ERROR_CHARS],
                "updated_at": int(time.time() * 1000),
            },
        )


def _iso(ms: Any) -> str | None:
    if ms is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC).isoformat(timespec="milliseconds")


def workflow_info(client: redis.Redis, namespace: str, workflow_id: str) -> dict[str, Any] | None:
    """A run's state: ``{"id", "name", "status", "failed_step", "error", "failed_task", "result", "steps": [...]}``,
    each step ``{"index", "group", "state", "tasks": [{"task", "id", "queue", "state", "result"}]}``;
    None if unknown."""
    stored = cast(dict[bytes, bytes], client.hgetall(state_key(namespace, workflow_id)))
    raw = {k.decode(): v.decode() for k, v in stored.items()}
    if "def" not in raw:
        return None
    definition = json.loads(raw["def"])
    steps = []
    for index, step in enumerate(definition["steps"]):
        tasks = []
        for member, (task, _payload) in enumerate(step["tasks"]):
            result = raw.get(f"r:{index}:{member}")
            tasks.append(
                {
                    "task": task,
                    "id": raw.get(f"t:{index}:{member}"),
                    "queue": raw.get(f"q:{index}:{member}"),
                    "state": raw.get(f"m:{index}:{member}", "waiting"),
                    "result": json.loads(result) if result is not None else None,
                }
            )
        states = {t["state"] for t in tasks}
        state = next((s for s in ("failed", "running", "retry", "pending") if s in states), None)
        if state is None:
            state = "completed" if states == {"completed"} else "waiting"
        steps.append({"index": index, "group": step["group"], "state": state, "tasks": tasks})
    failed_step = raw.get("failed_step")
    return {
        "id": workflow_id,
        "name": raw.get("name"),
        "status": raw.get("status"),
        "input": json.loads(raw.get("input", "{}")),
        "failed_step": int(failed_step) if failed_step is not None else None,
        "failed_task": ({"id": raw["failed_task"], "queue": raw.get("failed_queue")} if "failed_task" in raw else None),
        "error": raw.get("error"),
        "result": json.loads(raw["result"]) if "result" in raw else None,
        "created_at": _iso(raw.get("created_at")),
        "finished_at": _iso(raw.get("finished_at")),
        "steps": steps,
    }
