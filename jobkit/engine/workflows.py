"""Workflow runs: a chain of steps, each one task or a group of tasks run in parallel, the results passed along.

A step's payload is a template over ``input`` (the payload the run was started with) and ``prev`` (the previous
step's result; after a group, the list of its results in declaration order).

State lives in one Redis hash per run (``K.workflow(id)``); each step's messages carry ``jobkit_wf = [id, step,
member]`` in their options. :class:`~jobkit.engine.middleware.workflow_steps.WorkflowSteps` reports each member's
start and outcome here; when the last member of a step completes, the next step is enqueued. A step whose task is
archived stops the chain (the run says which step failed and why); retrying that task (``jobkit retry``) resumes it,
because its message still carries the workflow reference.

Every step's messages come from the message builder, so a step's payload is checked like any dispatch, and a
``unique`` step task takes its lock like any dispatch. **A step whose unique lock is held by another task is not
enqueued: the run fails at that step** with the ``DuplicateTask`` error naming the holder (for the first step,
starting the run raises ``DuplicateTask``, as a dispatch does). Members of a group enqueued before the refused one
still run.

Dramatiq's own pipelines and group callbacks are not used: group callbacks do not hand the group's results to the
next step, and a pipeline keeps no state that could say which step failed.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any, cast

from dramatiq.message import Message

from jobkit.config.model import WorkflowSpec
from jobkit.config.placeholders import references, render
from jobkit.engine.broker import JobkitBroker
from jobkit.engine.messages import MessageBuilder, Outgoing, duplicate_error
from jobkit.engine.running import CANCELED_OPTION
from jobkit.engine.sealing import redact
from jobkit.errors import DispatchError, DuplicateTask, TemplateError

__all__ = ["WORKFLOW_OPTION", "WorkflowRuns"]

#: The message option that ties a message to its run: ``[workflow id, step, member]``.
WORKFLOW_OPTION = "jobkit_wf"
#: A run's state stays inspectable this long after its last change.
STATE_TTL_S = 7 * 86_400
_ERROR_CHARS = 2000


def _now_ms() -> int:
    return int(time.time() * 1000)


def _iso(ms: Any) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _definition(spec: WorkflowSpec) -> dict[str, Any]:
    steps = [
        {"group": step.group, "tasks": [[task, dict(payload)] for task, payload in step.tasks]} for step in spec.steps
    ]
    return {"name": spec.name, "steps": steps}


def workflow_ref(message: Any) -> tuple[str, int, int] | None:
    """``(workflow id, step, member)`` of a message that belongs to a run, else None."""
    ref = message.options.get(WORKFLOW_OPTION)
    if not ref:
        return None
    return str(ref[0]), int(ref[1]), int(ref[2])


class WorkflowRuns:
    """Starts runs, moves them from step to step, and reads their state."""

    def __init__(self, broker: JobkitBroker, builder: MessageBuilder) -> None:
        self.broker = broker
        self.builder = builder
        self.redis = broker.client

    def _key(self, workflow_id: str) -> str:
        return self.broker.keys.workflow(workflow_id)

    # -- starting --------------------------------------------------------------------------------------------------
    def sensitive_inputs(self, definition: dict[str, Any]) -> list[str]:
        """The input paths a run must keep sealed: those a step's template puts into a sensitive field of its task
        (``token: "{{ input.token }}"`` for a task with ``sensitive: [token]``)."""
        found: list[str] = []
        for step in definition["steps"]:
            for task, template in step["tasks"]:
                spec = self.builder.project.tasks.get(task)
                for path in spec.sensitive if spec is not None else ():
                    node: Any = template
                    for part in path.split(".")[: -1 if path.endswith(".query") else None]:
                        node = node.get(part) if isinstance(node, dict) else None
                    if isinstance(node, str):
                        for ref in references(node):
                            if ref.startswith("input.") and ref[6:] not in found:
                                found.append(ref[6:])
        return found

    def start(
        self, spec: WorkflowSpec, payload: dict[str, Any], triggered_by: str | None = None
    ) -> tuple[str, list[Message[Any]]]:
        """Start one run: returns its id and the first step's messages. The first step is built (and so checked)
        before anything is stored; a refused unique lock raises :class:`~jobkit.errors.DuplicateTask`."""
        workflow_id = uuid.uuid4().hex
        definition = _definition(spec)
        try:
            first = self._build_step(workflow_id, definition, 0, {"input": payload})
        except TemplateError as exc:
            raise DispatchError(f"{spec.name}: step 1: {exc}") from None
        key = self._key(workflow_id)
        secret_inputs = self.sensitive_inputs(definition)
        definition["sensitive_input"] = secret_inputs
        stored_input = payload
        if secret_inputs:  # what flows into a step's sensitive field is sealed in the run's state too
            if self.builder.sealer is None:
                raise DispatchError(f"{spec.name}: its input feeds sensitive fields and needs an encryption key")
            stored_input = self.builder.sealer.seal(payload, secret_inputs)
        self.redis.hset(
            key,
            mapping={
                "name": spec.name,
                "def": json.dumps(definition),
                "input": json.dumps(stored_input),
                "status": "running",
                "created_at": _now_ms(),
                **({"by": triggered_by} if triggered_by is not None else {}),
            },
        )
        try:
            messages = self._send_step(workflow_id, 0, first)
        except DuplicateTask as exc:
            self._fail(workflow_id, 0, f"DuplicateTask: {exc}")
            raise
        return workflow_id, messages

    def _build_step(
        self, workflow_id: str, definition: dict[str, Any], index: int, context: dict[str, Any]
    ) -> list[Outgoing]:
        """Render and build every member of step ``index``; raises before anything is enqueued."""
        built: list[Outgoing] = []
        for member, (task, template) in enumerate(definition["steps"][index]["tasks"]):
            payload = render(template, context)
            if not isinstance(payload, dict):
                raise TemplateError(f"the payload of {task} is not a mapping")
            options = {WORKFLOW_OPTION: [workflow_id, index, member]}
            built.append(self.builder.build(task, payload, options=options))
        return built

    def _send_step(self, workflow_id: str, index: int, built: list[Outgoing]) -> list[Message[Any]]:
        key = self._key(workflow_id)
        fields: dict[str, Any] = {"step": index, "updated_at": _now_ms()}
        for member, outgoing in enumerate(built):
            fields[f"t:{index}:{member}"] = outgoing.message.message_id
            fields[f"q:{index}:{member}"] = outgoing.message.queue_name
            fields[f"m:{index}:{member}"] = "pending"
        self.redis.hset(key, mapping=cast(Any, fields))
        self.redis.expire(key, STATE_TTL_S)
        sent = []
        for outgoing in built:
            message, refused = self.broker.send(outgoing)
            if refused is not None:
                raise duplicate_error(outgoing.task, refused.holder)
            sent.append(message)
        return sent

    def _fail(self, workflow_id: str, step: int, error: str, status: str = "failed", **extra: Any) -> None:
        fields: dict[str, Any] = {"status": status, "failed_step": step, "error": error[:_ERROR_CHARS]}
        self.redis.hset(self._key(workflow_id), mapping=cast(Any, {**fields, "updated_at": _now_ms(), **extra}))
        self.redis.publish(self.broker.keys.finished(workflow_id), status)  # wakes a TaskRef.result() on the run

    # -- what the middleware reports -------------------------------------------------------------------------------
    def member_started(self, message: Any) -> None:
        ref = workflow_ref(message)
        if ref is not None:
            workflow_id, step, member = ref
            self.broker.lua.call("workflows", "start", workflow_id, step, member, message.message_id)

    def member_retrying(self, message: Any) -> None:
        ref = workflow_ref(message)
        if ref is not None:  # whether it retries or is archived is known in member_archived (after_nack)
            workflow_id, step, member = ref
            self.redis.hset(self._key(workflow_id), f"m:{step}:{member}", "retry")

    def member_completed(self, message: Any, result: Any) -> None:
        ref = workflow_ref(message)
        if ref is None:
            return
        workflow_id, step, member = ref
        key = self._key(workflow_id)
        raw = cast(list[bytes | None], self.redis.hmget(key, ["def", "input"]))
        if raw[0] is None:
            return  # the state expired or was deleted: nothing to continue
        definition = json.loads(raw[0])
        size = len(definition["steps"][step]["tasks"])
        spec = self.builder.project.tasks.get(message.actor_name)
        if spec is not None and spec.sensitive and isinstance(result, dict):
            # A step's result is shown with the run and feeds the next step: its sensitive fields never in clear
            # (the handler's other fields were scrubbed of their values as it returned).
            result = redact(result, spec.sensitive)
        recorded = json.dumps(result, default=str)
        done = int(self.broker.lua.call("workflows", "complete", workflow_id, step, member, recorded))
        if done != size:
            return
        stored = cast(list[bytes | None], self.redis.hmget(key, [f"r:{step}:{m}" for m in range(size)]))
        results = [json.loads(r or b"null") for r in stored]
        previous = results if definition["steps"][step]["group"] else results[0]
        nxt = step + 1
        if nxt == len(definition["steps"]):
            self.redis.hset(
                key, mapping={"status": "completed", "result": json.dumps(previous), "finished_at": _now_ms()}
            )
            self.redis.publish(self.broker.keys.finished(workflow_id), "completed")
            return
        stored_input = json.loads(raw[1] or b"{}")
        secret_inputs = definition.get("sensitive_input", [])
        if secret_inputs and self.builder.sealer is not None:
            stored_input = self.builder.sealer.open(stored_input, secret_inputs)
        context = {"input": stored_input, "prev": previous}
        try:
            self._send_step(workflow_id, nxt, self._build_step(workflow_id, definition, nxt, context))
        except (TemplateError, DispatchError, KeyError) as exc:
            self._fail(workflow_id, nxt, f"{type(exc).__name__}: {exc}")

    def member_archived(self, message: Any) -> None:
        ref = workflow_ref(message)
        if ref is None:
            return
        workflow_id, step, member = ref
        canceled_by = message.options.get(CANCELED_OPTION)
        if canceled_by is not None:  # a canceled step stops its run, which ends canceled
            status, error = "canceled", f"canceled by {canceled_by}"
        else:
            status, error = "failed", str(message.options.get("last_error", "archived"))
        self._fail(
            workflow_id,
            step,
            error,
            status,
            **{f"m:{step}:{member}": status, "failed_task": message.message_id, "failed_queue": message.queue_name},
        )

    # -- reading ---------------------------------------------------------------------------------------------------
    def info(self, workflow_id: str) -> dict[str, Any] | None:
        """A run's state: ``{"id", "name", "status", "failed_step", "error", "failed_task", "result", "steps": [...]}``,
        each step ``{"index", "group", "state", "tasks": [{"task", "id", "queue", "state", "result"}]}``;
        None if unknown."""
        stored = cast(dict[bytes, bytes], self.redis.hgetall(self._key(workflow_id)))
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
            state = next((s for s in ("failed", "canceled", "running", "retry", "pending") if s in states), None)
            if state is None:
                state = "completed" if states == {"completed"} else "waiting"
            steps.append({"index": index, "group": step["group"], "state": state, "tasks": tasks})
        failed_step = raw.get("failed_step")
        failed_task = {"id": raw["failed_task"], "queue": raw.get("failed_queue")} if "failed_task" in raw else None
        return {
            "id": workflow_id,
            "name": raw.get("name"),
            "status": raw.get("status"),
            "input": redact(json.loads(raw.get("input", "{}")), definition.get("sensitive_input", [])),
            "failed_step": int(failed_step) if failed_step is not None else None,
            "failed_task": failed_task,
            "error": raw.get("error"),
            "result": json.loads(raw["result"]) if "result" in raw else None,
            "created_at": _iso(raw.get("created_at")),
            "triggered_by": raw.get("by"),
            "finished_at": _iso(raw.get("finished_at")),
            "steps": steps,
        }
