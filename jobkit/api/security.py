"""Bearer-token checks. Each route of the guarded controllers says in its ``opt`` which role it needs:

- ``{"role": "admin"}`` (the default): changes (pause, delete, retry, cancel, schedules) — admin tokens only;
- ``{"role": "viewer"}``: reads (stats, tasks, schedules, workers, history) — viewer and admin tokens;
- ``{"role": "user"}``: triggers of ``api: true`` tasks — user and admin tokens;
- ``{"role": "viewer", "owner": True}``: a task's own page — viewer and admin tokens, and a user token for the tasks
  its own ``sub`` triggered (the route checks the task).

Anything else is 403 naming the role the route needs. A revoked token is 401, within a second of ``jobkit token
revoke`` (see :class:`~jobkit.services.auth.Revocations`).

The check runs as the controllers' ``before_request`` hook (:func:`admit`), not as a Litestar guard: Litestar hands
each guard a copy of the route handler, made per request (``copy.copy``: about 9 µs, the dearest single step of a
trigger). The hook runs at the same point of a request, before its body is read or parsed; a controller's hook
replaces the app's, so :func:`admit` runs the app's JSON-body check (:func:`json_bodies_only`) after its own.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from jobkit.errors import AuthError
from jobkit.services.auth import Claims, Revocations, verify_token

__all__ = [
    "ALLOWED",
    "BEARER",
    "admit",
    "checked_claims",
    "claims_of",
    "json_bodies_only",
    "may_read_task",
    "require_role",
]

BEARER = "BearerToken"
_PREFIX = "bearer "
#: The roles each route role admits.
ALLOWED = {"admin": ("admin",), "viewer": ("viewer", "admin"), "user": ("user", "admin")}
_NEEDS = {"admin": "an admin token", "viewer": "a viewer or admin token", "user": "a user or admin token"}


async def _authenticate(connection: ASGIConnection[Any, Any, Any, Any], header: str | None = None) -> Claims:
    """The claims of the connection's bearer token (``header``: the Authorization header, when the caller read it)."""
    if header is None:
        header = connection.headers.get("authorization", "")
    if not header[: len(_PREFIX)].lower() == _PREFIX:
        raise NotAuthorizedException("missing bearer token (send Authorization: Bearer <token>; see `jobkit token`)")
    services = connection.app.state.services
    try:
        claims = verify_token(services.secret, header[len(_PREFIX) :].strip())
    except AuthError as exc:
        raise NotAuthorizedException(str(exc)) from None
    revocations: Revocations = services.revocations
    if revocations.stale():  # at most once a second: off the event loop
        await _refreshed(revocations)
    if revocations.revoked(claims.jti):
        raise NotAuthorizedException("token revoked")
    return claims


#: The refresh of each process's revocation list in flight, if any: the requests that find the list stale at the same
#: moment wait for one read of Redis, not one each.
_refreshing: weakref.WeakKeyDictionary[Revocations, asyncio.Task[None]] = weakref.WeakKeyDictionary()


async def _refreshed(revocations: Revocations) -> None:
    """Wait until the revocation list has been read again (by this request or by one that asked first); a request
    that goes away does not cancel the read the others wait for."""
    task = _refreshing.get(revocations)
    if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
        task = asyncio.ensure_future(asyncio.to_thread(revocations.refresh))
        _refreshing[revocations] = task
    await asyncio.shield(task)


async def require_role(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler, header: str | None = None
) -> None:
    """A valid, unrevoked token whose role the handler's ``opt["role"]`` admits (in the signature of a Litestar
    guard, which it was); ``header``: the Authorization header, when the caller read it."""
    claims = await _authenticate(connection, header)
    opt = handler.opt
    needed = opt.get("role", "admin")
    if claims.role not in ALLOWED[needed] and not (opt.get("owner") and claims.role == "user"):
        raise PermissionDeniedException(f"this route needs {_NEEDS[needed]}; {claims.sub!r} has role {claims.role!r}")
    connection.scope["state"][_CLAIMS] = claims  # what claims_of reads (Litestar's connection.state, without
    # the State object it builds on each access)


#: Where a request's checked claims are kept, in its scope's state.
_CLAIMS = "jobkit_claims"

#: The request headers admit reads, in one pass over the raw ASGI headers (names are lowercase there).
_ADMIT_HEADERS = {b"authorization": 0, b"content-length": 1, b"content-type": 2, b"transfer-encoding": 3}


async def admit(request: Request[Any, Any, Any]) -> None:
    """``before_request`` of the token-checked controllers: the role check, then the JSON-body check (what
    :func:`json_bodies_only` does), reading the four headers they need in one pass (the first of each)."""
    found: list[bytes | None] = [None, None, None, None]
    for name, value in request.scope["headers"]:
        slot = _ADMIT_HEADERS.get(name)
        if slot is not None and found[slot] is None:
            found[slot] = value
    authorization, length, kind, chunked = found
    await require_role(request, request.route_handler, authorization.decode("latin-1") if authorization else "")
    if request.scope["method"] in _BODY_METHODS and (length not in (None, b"", b"0") or chunked is not None):
        _require_json(kind.decode("latin-1") if kind else "")


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


async def json_bodies_only(request: Request[Any, Any, Any]) -> None:
    """A request that carries a body must say it is JSON (415 otherwise): a `text/plain` body is not parsed. The
    app's ``before_request`` hook (the token-checked controllers' :func:`admit` checks the same)."""
    headers = request.headers
    has_body = headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in headers  # chunked too
    if request.method in _BODY_METHODS and has_body:
        _require_json(headers.get("content-type", ""))


def _require_json(content_type: str) -> None:
    media_type = content_type.split(";")[0].strip().lower()
    if media_type != "application/json":
        raise HTTPException(
            status_code=415, detail=f"the body must be application/json, found {media_type or 'no content type'!r}"
        )


def claims_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Claims:
    """The claims :func:`require_role` checked for this request."""
    claims: Claims = connection.scope["state"][_CLAIMS]
    return claims


def checked_claims(connection: ASGIConnection[Any, Any, Any, Any]) -> Claims | None:
    """The claims checked for this request, or None before (or without) a check: for error handlers."""
    claims: Claims | None = connection.scope.get("state", {}).get(_CLAIMS)
    return claims


def may_read_task(claims: Claims, triggered_by: str | None) -> None:
    """A user token reads only the tasks its own ``sub`` triggered (viewer and admin tokens read every task)."""
    if claims.role == "user" and triggered_by != claims.sub:
        raise PermissionDeniedException(
            f"a user token reads only the tasks it triggered; this one needs a viewer or admin token "
            f"({claims.sub!r} has role 'user')"
        )
