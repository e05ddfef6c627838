"""The routes of SPEC §5. Each one parses, calls the service layer the CLI uses, and answers a schema."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.exceptions import ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.types import BeforeRequestHookHandler
from redis.exceptions import RedisError

from jobkit.api.schemas import (
    ArchivedTask,
    BatchTriggered,
    BulkOutcome,
    BulkRequest,
    Canceled,
    DeletedTask,
    DuplicateBody,
    EmailTrigger,
    ErrorBody,
    ExportTrigger,
    ExportTriggered,
    Health,
    HistoryPage,
    HistoryRow,
    NewSchedule,
    PauseState,
    PendingArchived,
    PendingDeleted,
    Retried,
    RetryRequest,
    ScheduleDeleted,
    ScheduleList,
    SearchAnswer,
    StatsPage,
    TaskLimits,
    TaskPage,
    Triggered,
    WorkflowState,
)
from jobkit.api.security import BEARER, admit, claims_of, may_read_task
from jobkit.builtin.exports import export_payload
from jobkit.config.payloads import MAX_DEPTH
from jobkit.durations import parse_duration
from jobkit.engine.messages import DISPATCH_OPTIONS
from jobkit.errors import (
    Conflict,
    DurationError,
    InvalidRequest,
    ScheduleError,
    TaskNotFound,
    UnknownQueue,
    UnknownTask,
)
from jobkit.scheduling.dynamic import ScheduleInfo, Schedules
from jobkit.services.auth import Claims, Revocations
from jobkit.services.client import Client, TaskRef
from jobkit.services.events import KEEPALIVE, Events, Subscription
from jobkit.services.health import latest as latest_health
from jobkit.services.metrics import CONTENT_TYPE, live_workers, render
from jobkit.services.queues import Queues, QueueStats, TaskInfo
from jobkit.services.search import MAX_TEXT, Search
from jobkit.services.system import System

__all__ = ["JobsController", "Services", "health", "metrics"]

State = Literal["pending", "active", "scheduled", "retry", "archived", "completed"]
#: Reads need a viewer (or admin) token, triggers a user (or admin) token, every change an admin token.
READ = {"role": "viewer"}
TRIGGER = {"role": "user"}
#: A task's own page: viewer and admin tokens, and a user token for the tasks it triggered.
OWN_TASK = {"role": "viewer", "owner": True}
#: The most payloads one batch trigger takes (a tiny payload is a few bytes: the body limit alone would let one
#: request enqueue hundreds of thousands of tasks).
MAX_BATCH = 10_000
#: What a trigger body may carry besides the payload.
_TRIGGER_OPTIONS = ("delay", "at", "queue")


@dataclass
class Services:
    """What the routes need, built once per app (no module-level state)."""

    client: Client
    queues: Queues
    schedules: Schedules
    system: System
    secret: str
    revocations: Revocations
    search: Search
    events: Events


def _errors(*codes: int) -> dict[int, ResponseSpec]:
    texts = {
        400: "Malformed request (the field is named)",
        401: "Missing, invalid, expired or revoked token",
        403: "The token's role may not use this route (the role it needs is named)",
        404: "Unknown queue, task or entry",
        409: "Not allowed in the current state",
        413: "The body is larger than any task takes",
        415: "The body is not application/json",
        422: "Input the task or service refuses, or a field the body may not have (the field is named)",
        429: "This API process runs as many of these at once as it takes; try again shortly",
        503: "Redis is unreachable",
    }
    return {code: ResponseSpec(ErrorBody, description=texts[code]) for code in (401, 403, 503, *codes)}


def _body_errors(*codes: int) -> dict[int, ResponseSpec]:
    """The answers of a route that takes a JSON body."""
    return _errors(400, 413, 415, 422, *codes)


#: A trigger may also meet a unique task that is already queued: 409 with the holder's id.
_TRIGGER_ERRORS = {
    **_body_errors(404),
    409: ResponseSpec(DuplicateBody, description="A unique task with the same key is already queued or running"),
}


def _services(request: Request[Any, Any, Any]) -> Services:
    services: Services = request.app.state.services
    return services


def _dispatch_options(task: str, body: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if (delay := body.get("delay")) is not None:
        try:
            if isinstance(delay, bool) or not isinstance(delay, str | int | float):
                raise DurationError(f"expected a duration like '5m' or seconds, found {type(delay).__name__}")
            options["delay"] = parse_duration(delay) if isinstance(delay, str) else timedelta(seconds=delay)
        except (DurationError, OverflowError, ValueError) as exc:
            raise InvalidRequest(f"{task}: delay: {exc}") from None
    if (at := body.get("at")) is not None:
        try:
            options["at"] = datetime.fromisoformat(at) if isinstance(at, str) else None
        except ValueError:
            options["at"] = None
        if options["at"] is None:
            raise InvalidRequest(f"{task}: at: expected an ISO time like 2026-01-31T09:00:00+00:00, found {at!r}")
    if (queue := body.get("queue")) is not None:
        if not isinstance(queue, str):
            raise InvalidRequest(f"{task}: queue: expected a queue name, found {type(queue).__name__}")
        options["queue"] = queue
    return options


async def _dispatch(
    request: Request[Any, Any, Any], task: str, payload: dict[str, Any], options: dict[str, Any]
) -> TaskRef:
    # Awaited on asyncio Redis: no worker thread per request, and the loop serves others while Redis answers.
    if _depth(payload) > MAX_DEPTH:
        raise ValidationException(
            f"body: nests lists or mappings deeper than the {MAX_DEPTH} levels a payload may have"
        )
    if "triggered_by" in payload:  # what the API records from the token: never the caller's to say
        raise InvalidRequest("triggered_by: the API sets it from the token; it is not a payload field")
    services = _services(request)
    try:
        return await services.client.dispatch_parts_async(task, payload, options, claims_of(request).sub)
    except UnknownQueue as exc:  # in a body, an unknown queue is bad input rather than a missing resource
        raise InvalidRequest(f"queue: {exc}") from None


def _listed(values: list[str] | None) -> list[str]:
    """``?queue=a&queue=b`` and ``?queue=a,b`` alike."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


async def _event_stream(
    services: Services, claims: Claims, subscription: Subscription, limit: int | None
) -> AsyncIterator[ServerSentEventMessage]:
    """The events of ``subscription`` as SSE messages, while the token stays valid: the stream ends (with an ``end``
    event saying why) once it expires or is revoked, checked at least every second; its place is given back then."""
    sent, quiet = 0, 0.0
    with subscription:
        while limit is None or sent < limit:
            event = await subscription.next(timeout=1.0)
            revocations = services.revocations
            if revocations.stale():
                await asyncio.to_thread(revocations.refresh)
            ended = "token revoked" if revocations.revoked(claims.jti) else None
            if claims.exp <= time.time():
                ended = "token expired"
            if subscription.ended:
                ended = "server going away; reconnect"
            if ended is not None:
                yield ServerSentEventMessage(event="end", data=json.dumps({"reason": ended}))
                return
            if event is None:
                quiet += 1.0
                if quiet >= KEEPALIVE:
                    quiet = 0.0
                    yield ServerSentEventMessage(comment="keepalive")
                continue
            quiet = 0.0
            sent += 1
            yield ServerSentEventMessage(event=event.kind, data=json.dumps(event.data, separators=(",", ":")))


def _depth(value: Any) -> int:
    """How deeply lists and mappings nest in ``value`` (without recursion: a hostile body may nest very deep)."""
    if isinstance(value, dict) and not any(isinstance(child, dict | list) for child in value.values()):
        return 1  # a flat payload, most of them: no walk
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level + 1)
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


class JobsController(Controller):
    path = "/api/jobs"
    before_request: BeforeRequestHookHandler | None = admit  # the token check (see jobkit.api.security)
    security = [{BEARER: []}]
    tags = ["jobs"]

    @get("/stats", sync_to_thread=True, opt=READ, responses=_errors())
    def stats(self, request: Request[Any, Any, Any]) -> StatsPage:
        """Every queue's figures, heaviest queue first, and Redis memory with jobkit's share (``memory``)."""
        services = _services(request)
        return StatsPage(services.queues.all_stats(), services.system.memory_or_none())

    @get("/queue/{queue:str}", sync_to_thread=True, opt=READ, responses=_errors(404))
    def queue(self, request: Request[Any, Any, Any], queue: FromPath[str]) -> QueueStats:
        return _services(request).queues.stats(queue)

    @get("/history", sync_to_thread=True, opt=READ, responses=_errors(400))
    def history(
        self, request: Request[Any, Any, Any], days: Annotated[int, QueryParameter(ge=1, le=90)] = 7
    ) -> HistoryPage:
        """Processed and failed attempts per queue per day (UTC), oldest first."""
        rows = _services(request).queues.history(days)
        return HistoryPage(days, [HistoryRow(**row) for row in rows])

    @post(
        "/trigger/email",
        status_code=202,
        opt=TRIGGER,
        responses=_TRIGGER_ERRORS,
    )
    async def trigger_email(self, request: Request[Any, Any, Any], data: JSONBody[EmailTrigger]) -> Triggered:
        """Queue ``email:send``."""
        payload: dict[str, Any] = {"to": data.to, "subject": data.subject, "body": data.body}
        if data.data is not None:
            payload["data"] = data.data
        ref = await _dispatch(request, "email:send", payload, {})
        return Triggered("Email queued successfully", "queued", ref.id, ref.task, ref.queue)

    @post(
        "/trigger/export",
        status_code=202,
        opt=TRIGGER,
        responses=_TRIGGER_ERRORS,
    )
    async def trigger_export(self, request: Request[Any, Any, Any], data: JSONBody[ExportTrigger]) -> ExportTriggered:
        """Queue ``export:process`` of a query declared under ``exports:`` (never SQL)."""
        services, claims = _services(request), claims_of(request)
        user_id = data.user_id
        own: int | str = int(claims.sub) if claims.sub.isdigit() else claims.sub
        if claims.role != "admin":
            if user_id is not None and str(user_id) != claims.sub:
                raise InvalidRequest(f"user_id: a user token exports for its own user ({claims.sub!r}) only")
            user_id = own
        elif user_id is None:
            user_id = data.params.get("user_id", own)
        filename = data.filename
        if claims.role != "admin" and filename is not None:
            # The exports folder is shared: a user's own name for its file starts with its sub, so it can never
            # replace another user's export.
            mine = re.sub(r"[^A-Za-z0-9_-]", "_", claims.sub) + "-"
            filename = filename if filename.startswith(mine) else mine + filename
        payload = export_payload(
            services.client.project, user_id, data.export_type, data.export, data.params, filename
        )  # 422 on a bad one
        filename = payload["filename"]
        ref = await _dispatch(request, "export:process", payload, {})
        return ExportTriggered("Export job queued successfully", filename, "queued", ref.id)

    @post(
        "/trigger/{task:str}", status_code=202, opt=TRIGGER,
        responses=_TRIGGER_ERRORS,
    )  # fmt: skip
    async def trigger(
        self, request: Request[Any, Any, Any], task: FromPath[str], data: JSONBody[dict[str, Any]]
    ) -> Triggered:
        """Queue any task declared with ``api: true``; the body is its payload plus optional ``delay``, ``at``,
        ``queue``."""
        services = _services(request)
        workflow = services.client.project.workflows.get(task)
        if workflow is not None:  # a workflow name starts a run; its id is the task_id
            if not workflow.api:
                raise UnknownTask(f"workflow {task!r} cannot be triggered through the API (declare it with api: true)")
            ref = await _dispatch(request, task, dict(data), {})
            return Triggered(f"workflow {task} started", "queued", ref.id, ref.task, ref.queue)
        spec = services.client.task_spec(task)
        if not spec.api:
            raise UnknownTask(f"task {task!r} cannot be triggered through the API (declare it with api: true)")
        reserved = sorted(set(data) & (set(DISPATCH_OPTIONS) - set(_TRIGGER_OPTIONS)))
        if reserved:
            raise InvalidRequest(f"{reserved[0]}: a dispatch option the API does not take; it is not a payload field")
        payload = {k: v for k, v in data.items() if k not in _TRIGGER_OPTIONS}
        ref = await _dispatch(request, task, payload, _dispatch_options(task, data))
        return Triggered(f"{task} queued successfully", "queued", ref.id, ref.task, ref.queue)

    @post("/trigger/{task:str}/batch", status_code=202, sync_to_thread=True, opt=TRIGGER, responses=_TRIGGER_ERRORS)
    def trigger_batch(
        self, request: Request[Any, Any, Any], task: FromPath[str], data: JSONBody[list[dict[str, Any]]]
    ) -> BatchTriggered:
        """Queue one ``api: true`` task per payload of the list: every payload is checked first, and if one is
        refused nothing is queued (the error names its index)."""
        services = _services(request)
        spec = services.client.task_spec(task)
        if not spec.api:
            raise UnknownTask(f"task {task!r} cannot be triggered through the API (declare it with api: true)")
        if not data or len(data) > MAX_BATCH:
            raise InvalidRequest(f"body: a list of 1 to {MAX_BATCH} payloads, found {len(data)}")
        for index, payload in enumerate(data):
            if _depth(payload) > MAX_DEPTH:
                raise ValidationException(f"body[{index}]: nests deeper than the {MAX_DEPTH} levels a payload may have")
            reserved = sorted(set(payload) & set(DISPATCH_OPTIONS))
            if reserved:
                raise InvalidRequest(f"body[{index}].{reserved[0]}: a dispatch option, not a payload field")
        refs = services.client.dispatch_many(task, data, triggered_by=claims_of(request).sub)
        return BatchTriggered(f"{len(refs)} {task} queued", "queued", task, spec.queue, [ref.id for ref in refs])

    @get("/workflows/{workflow_id:str}", sync_to_thread=True, opt=OWN_TASK, responses=_errors(404))
    def workflow(self, request: Request[Any, Any, Any], workflow_id: FromPath[str]) -> WorkflowState:
        """A workflow run: its status, the step that failed (if one did), and every step's tasks and states; a user
        token reads only the runs it started."""
        found = _services(request).queues.workflow(workflow_id)
        may_read_task(claims_of(request), found.get("triggered_by"))
        return WorkflowState.of(found)

    @get("/limits/{task:str}", sync_to_thread=True, opt=READ, responses=_errors(404))
    def limits(self, request: Request[Any, Any, Any], task: FromPath[str]) -> TaskLimits:
        """The unique / rate_limit / concurrency settings of a task and how much of them is in use now."""
        return TaskLimits(**_services(request).queues.limits(task))

    @put("/queue/{queue:str}/pause", sync_to_thread=True, responses=_errors(404))
    def pause(self, request: Request[Any, Any, Any], queue: FromPath[str]) -> PauseState:
        _services(request).queues.pause(queue)
        return PauseState(queue, True)

    @put("/queue/{queue:str}/resume", sync_to_thread=True, responses=_errors(404))
    def resume(self, request: Request[Any, Any, Any], queue: FromPath[str]) -> PauseState:
        _services(request).queues.resume(queue)
        return PauseState(queue, False)

    @delete("/queue/{queue:str}/pending", status_code=200, sync_to_thread=True, responses=_errors(404))
    def delete_pending(self, request: Request[Any, Any, Any], queue: FromPath[str]) -> PendingDeleted:
        return PendingDeleted(queue, _services(request).queues.delete_all_pending(queue))

    @post("/queue/{queue:str}/archive-pending", status_code=200, sync_to_thread=True, responses=_errors(404))
    def archive_pending(self, request: Request[Any, Any, Any], queue: FromPath[str]) -> PendingArchived:
        return PendingArchived(queue, _services(request).queues.archive_all_pending(queue))

    @get("/queue/{queue:str}/tasks", sync_to_thread=True, opt=READ, responses=_errors(400, 404))
    def tasks(
        self,
        request: Request[Any, Any, Any],
        queue: FromPath[str],
        task_state: Annotated[State, QueryParameter(name="state")] = "pending",
        page: Annotated[int, QueryParameter(ge=1, le=1_000_000)] = 1,
        size: Annotated[int, QueryParameter(ge=1, le=1000)] = 20,
    ) -> TaskPage:
        total, infos = _services(request).queues.tasks(queue, task_state, page, size)
        return TaskPage(queue, task_state, page, size, total, infos)

    @get("/task/{queue:str}/{task_id:str}", sync_to_thread=True, opt=OWN_TASK, responses=_errors(404))
    def task(self, request: Request[Any, Any, Any], queue: FromPath[str], task_id: FromPath[str]) -> TaskInfo:
        """A task; a user token reads only the tasks it triggered."""
        info = _services(request).queues.task(queue, task_id)
        may_read_task(claims_of(request), info.triggered_by)
        return info

    @delete("/task/{queue:str}/{task_id:str}", status_code=200, sync_to_thread=True, responses=_errors(404, 409))
    def delete_task(self, request: Request[Any, Any, Any], queue: FromPath[str], task_id: FromPath[str]) -> DeletedTask:
        """Delete a pending, scheduled, retry, archived or completed task (a running one: 409)."""
        state = _services(request).queues.delete(queue, task_id)
        return DeletedTask(queue, task_id, True, state)

    @post("/task/{queue:str}/{task_id:str}/cancel", status_code=200, sync_to_thread=True, responses=_errors(404, 409))
    def cancel_task(self, request: Request[Any, Any, Any], queue: FromPath[str], task_id: FromPath[str]) -> Canceled:
        """Cancel a task that has not finished: a pending, scheduled or retry one is archived as canceled at once, a
        running one is interrupted within a second. Never retried; the task keeps who canceled it (409 once it
        finished)."""
        previous = _services(request).queues.cancel(queue, task_id, by=claims_of(request).sub)
        return Canceled(queue, task_id, previous, "canceling" if previous == "active" else "canceled")

    @post("/task/{queue:str}/{task_id:str}/archive", status_code=200, sync_to_thread=True, responses=_errors(404, 409))
    def archive_task(
        self, request: Request[Any, Any, Any], queue: FromPath[str], task_id: FromPath[str]
    ) -> ArchivedTask:
        """Archive a pending, scheduled or retry task (it stays inspectable and can be retried; 409 otherwise)."""
        previous = _services(request).queues.archive(queue, task_id, by=claims_of(request).sub)
        return ArchivedTask(queue, task_id, previous, "archived")

    @post("/retry", status_code=200, sync_to_thread=True, responses=_body_errors(404, 409))
    def retry(self, request: Request[Any, Any, Any], data: JSONBody[RetryRequest]) -> Retried:
        """Run an archived, retry or scheduled task now (an archived one with a fresh retry budget)."""
        previous = _services(request).queues.retry(data.queue, data.task_id)
        return Retried("Task queued to run now", data.queue, data.task_id, previous, "queued")

    @get("/search", sync_to_thread=True, opt=READ, responses=_errors(400, 404, 422, 429))
    def search(
        self,
        request: Request[Any, Any, Any],
        q: Annotated[str, QueryParameter(max_length=MAX_TEXT)] = "",
        queue: Annotated[list[str] | None, QueryParameter(description="a queue, or several (repeated or a,b)")] = None,
        task_state: Annotated[
            list[str] | None, QueryParameter(name="state", description="a state, or several (repeated or a,b)")
        ] = None,
        task: Annotated[str | None, QueryParameter(description="only tasks of this type")] = None,
        cursor: Annotated[str | None, QueryParameter(description="the cursor of the previous answer")] = None,
        size: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    ) -> SearchAnswer:
        """Tasks whose id starts with ``q``, or whose type, payload or last error contains it (case-insensitive;
        sensitive fields never match), in every state of every queue or the ones given. Each answer takes at most
        a fraction of a second: follow ``cursor`` for more (null: every stored task was looked at)."""
        page = _services(request).search.search(
            q, queues=_listed(queue), states=_listed(task_state), task=task or None, cursor=cursor or None, size=size
        )
        return SearchAnswer(page.tasks, page.cursor, page.scanned)

    @get("/events", opt=READ, responses=_errors(429), media_type="text/event-stream")
    async def events(
        self,
        request: Request[Any, Any, Any],
        limit: Annotated[int | None, QueryParameter(ge=1, le=100_000, description="end after this many events")] = None,
    ) -> ServerSentEvent:
        """Server-sent events: ``stats`` (every queue's figures, when they change and at least every 5 s),
        ``changes`` (how each count moved), ``archived`` (tasks newly archived, payloads redacted), ``unavailable``
        (Redis did not answer), and ``end`` (the token expired or was revoked, or the server is going away). Send
        the token as a bearer header like on every route (the dashboard reads the stream with fetch()). At most 4
        streams per token and 200 per process are open at once: one more is a 429."""
        services = _services(request)
        claims = claims_of(request)
        owner = claims.jti or f"sub:{claims.sub}"  # a token without an id: its subject
        subscription = services.events.subscribe(owner)  # here, so a refusal is a 429 rather than a cut stream
        return ServerSentEvent(_event_stream(services, claims, subscription, limit), retry_duration=2000)

    @post("/queue/{queue:str}/tasks/bulk", status_code=200, sync_to_thread=True, responses=_body_errors(404, 409))
    def bulk(self, request: Request[Any, Any, Any], queue: FromPath[str], data: JSONBody[BulkRequest]) -> BulkOutcome:
        """One action for many tasks of a queue in one request: ``{"action", "ids": [...]}`` for a selection (each
        task it could not change is listed with the reason), or ``{"action", "state"}`` for every task in a state."""
        if (data.ids is None) == (data.state is None):
            raise InvalidRequest("ids, state: give exactly one of them (the tasks, or a whole state)")
        queues = _services(request).queues
        if data.ids is not None:
            return queues.bulk(queue, data.action, data.ids, by=claims_of(request).sub)
        assert data.state is not None
        return queues.bulk_state(queue, data.action, data.state)

    @get("/schedules", sync_to_thread=True, opt=READ, responses=_errors())
    def schedules(self, request: Request[Any, Any, Any]) -> ScheduleList:
        """Every entry (schedules.yaml, periodiq, API) with its next run time, soonest first."""
        return ScheduleList(_services(request).schedules.list())

    @post("/schedules", status_code=201, sync_to_thread=True, responses=_body_errors(404))
    def add_schedule(self, request: Request[Any, Any, Any], data: JSONBody[NewSchedule]) -> ScheduleInfo:
        """Create a one-time (``at``) or recurring (``every`` or ``cron``) entry."""
        schedules = _services(request).schedules
        if sum(value is not None for value in (data.at, data.every, data.cron)) != 1:
            raise InvalidRequest("at, every, cron: give exactly one of them")
        if data.at is not None:
            entry_id = schedules.once(data.task, data.payload, data.at, queue=data.queue)
        else:
            entry_id = schedules.recurring(
                data.task, data.payload, every=data.every, cron=data.cron, queue=data.queue, timezone=data.timezone
            )
        for info in schedules.list():
            if info.id == entry_id:
                return info
        raise TaskNotFound(f"schedule {entry_id!r} fired and was removed already")  # pragma: no cover

    @delete("/schedules/{entry_id:str}", status_code=200, sync_to_thread=True, responses=_errors(404, 409))
    def remove_schedule(self, request: Request[Any, Any, Any], entry_id: FromPath[str]) -> ScheduleDeleted:
        try:
            removed = _services(request).schedules.remove(entry_id)
        except ScheduleError as exc:
            raise Conflict(str(exc)) from None
        if not removed:
            raise TaskNotFound(f"no schedule {entry_id!r}")
        return ScheduleDeleted(entry_id, True)


@get("/health", sync_to_thread=True, tags=["ops"], responses={503: ResponseSpec(Health, description="Redis down")})
def health(request: Request[Any, Any, Any]) -> Response[Health]:
    """Redis reachability and live workers: 200, or 503 when Redis does not answer."""
    client = _services(request).client
    try:
        client.broker.client.ping()
        workers = live_workers(client)
        last_check = latest_health(client)
    except (RedisError, OSError):
        return Response(Health("unavailable", "unreachable", None), status_code=503)
    return Response(Health("ok", "ok", workers, last_check), status_code=200)


@get(
    "/metrics", sync_to_thread=True, tags=["ops"], media_type=CONTENT_TYPE,
    responses={503: ResponseSpec(ErrorBody, description="Redis is unreachable")},
)  # fmt: skip
def metrics(request: Request[Any, Any, Any]) -> str:
    """Prometheus text format: per-queue gauges and counters, and the live worker count."""
    services = _services(request)
    return render(services.queues.all_stats(), live_workers(services.client))
