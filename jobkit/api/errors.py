"""Every error the API answers is JSON ``{"status_code": int, "detail": str}``; nothing else, never a traceback.

Litestar's own validation errors carry an ``extra`` list; we fold the first field's name and message into ``detail``
instead, so one shape (``ErrorBody``) documents every error response.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import MediaType, Request, Response
from litestar.enums import ParamType
from litestar.exceptions import HTTPException, ValidationException
from redis.exceptions import RedisError

from jobkit.api.schemas import DuplicateBody, ErrorBody
from jobkit.api.security import checked_claims
from jobkit.config.payloads import MAX_DEPTH
from jobkit.errors import (
    AuthError,
    Conflict,
    DispatchError,
    DuplicateTask,
    InvalidRequest,
    JobkitError,
    NotReplicated,
    PayloadError,
    TaskNotFound,
    TaskStateError,
    TooBusy,
    UnknownQueue,
    UnknownTask,
)

__all__ = ["EXCEPTION_HANDLERS", "error_response"]

log = logging.getLogger("jobkit.api")


def error_response(status: int, detail: str) -> Response[ErrorBody]:
    return Response(ErrorBody(status, detail), status_code=status, media_type=MediaType.JSON)


def _parameter_name(request: Request[Any, Any, Any], key: str) -> str:
    """The name the client wrote: a handler argument ``task_state`` declared ``QueryParameter(name="state")`` is the
    query parameter ``state``."""
    try:
        field = request.route_handler.parsed_fn_signature.parameters.get(key)
    except AttributeError:
        return key
    kwarg = getattr(field, "kwarg_definition", None)
    for attribute in ("name", "query", "header", "cookie"):  # QueryParameter(name=…), Parameter(query=…)
        alias = getattr(kwarg, attribute, None)
        if isinstance(alias, str) and alias:
            return alias
    return key


def _validation_detail(request: Request[Any, Any, Any], exc: ValidationException) -> str:
    extra: Any = exc.extra
    if isinstance(extra, list) and extra and isinstance(extra[0], dict):
        first = extra[0]
        key, source, message = first.get("key"), first.get("source"), first.get("message", "invalid")
        if isinstance(source, ParamType) and key:  # query, path, header, cookie: as the client wrote it
            return f"{source.value} parameter {_parameter_name(request, str(key))!r}: {message}"
        parts = (source,) if key == "data" and source == "body" else (source, key)  # "data" is the whole body
        where = ".".join(str(part) for part in parts if part)
        return f"{where}: {message}" if where else str(message)
    return str(exc.detail)


_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")
#: A field the seed's clients send that jobkit refuses on purpose, and why.
_REFUSED_FIELDS = {"query": "raw SQL is never accepted: name an export declared under `exports:` in jobs.yaml"}


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    if isinstance(exc, ValidationException):
        detail = _validation_detail(request, exc)
        unknown = _UNKNOWN_FIELD.search(detail)
        if unknown:  # a well-formed body with a field the route does not take: 422 naming it
            field = unknown.group(1)
            hint = _REFUSED_FIELDS.get(field, "the route does not take it; see /schema for the body it takes")
            return error_response(422, f"body.{field}: unknown field ({hint})")
        return error_response(400, detail)
    return error_response(exc.status_code, str(exc.detail))


def _service(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    if isinstance(exc, AuthError):
        return error_response(401, str(exc))
    if isinstance(exc, UnknownQueue | UnknownTask | TaskNotFound):
        return error_response(404, str(exc))
    if isinstance(exc, TaskStateError | Conflict):
        return error_response(409, str(exc))
    if isinstance(exc, TooBusy):
        return error_response(429, str(exc))  # a limit of this process: the same request succeeds once one ends
    if isinstance(exc, NotReplicated):
        return error_response(503, str(exc))  # the server's side, and the client decides whether to send again
    if isinstance(exc, PayloadError | DispatchError | InvalidRequest | JobkitError):
        return error_response(422, str(exc))  # any other refusal of a service: the input, not the server
    return _unexpected(request, exc)


def _too_deep(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    return error_response(400, f"body: nests lists or mappings deeper than the {MAX_DEPTH} levels a payload may have")


#: A task id (Dramatiq's message ids are UUIDs).
_TASK_ID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def _duplicate(request: Request[Any, Any, Any], exc: DuplicateTask) -> Response[DuplicateBody]:
    text, holder = str(exc), exc.existing_id
    claims = checked_claims(request)
    if claims is not None and claims.role == "user" and not (holder and _triggered_by(request, holder) == claims.sub):
        # A user token learns that the key is taken, not whose task holds it (its id would be another user's).
        text, holder = _TASK_ID.sub("another task", text), ""
    return Response(DuplicateBody(409, text, holder), status_code=409, media_type=MediaType.JSON)


def _triggered_by(request: Request[Any, Any, Any], task_id: str) -> str | None:
    """Who triggered task ``task_id`` (looked for in every queue), or None."""
    queues = request.app.state.services.queues
    for name in queues.list():
        try:
            found: str | None = queues.task(name, task_id).triggered_by
        except TaskNotFound:
            continue
        return found
    return None


def _redis(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    log.warning("%s %s: Redis unreachable: %s", request.method, request.url.path, type(exc).__name__)
    return error_response(503, "Redis is unreachable; try again shortly")


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    if isinstance(exc, HTTPException):
        return _http(request, exc)
    if isinstance(exc, RedisError | ConnectionError | TimeoutError | FileNotFoundError):
        return _redis(request, exc)
    log.exception("%s %s failed", request.method, request.url.path)
    return error_response(500, "internal error (logged on the server)")


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    HTTPException: _http,
    AuthError: _service,
    UnknownQueue: _service,
    UnknownTask: _service,
    TaskNotFound: _service,
    TaskStateError: _service,
    DuplicateTask: _duplicate,
    NotReplicated: _service,
    TooBusy: _service,
    DispatchError: _service,
    InvalidRequest: _service,
    JobkitError: _service,
    Conflict: _service,
    RedisError: _redis,
    ConnectionError: _redis,
    TimeoutError: _redis,
    RecursionError: _too_deep,  # msgspec gives up on a body nested some thousand levels deep
    Exception: _unexpected,
}
