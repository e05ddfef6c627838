"""Bearer-token guards: ``user`` tokens may trigger tasks, everything else under ``/api/jobs`` needs ``admin``."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from jobkit.errors import AuthError
from jobkit.services.auth import Claims, verify_token

__all__ = ["BEARER", "claims_of", "require_role"]

BEARER = "BearerToken"
_PREFIX = "bearer "


def _authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Claims:
    header = connection.headers.get("authorization", "")
    if not header[: len(_PREFIX)].lower() == _PREFIX:
        raise NotAuthorizedException("missing bearer token (send Authorization: Bearer <token>; see `jobkit token`)")
    secret: str = connection.app.state.services.secret
    try:
        return verify_token(secret, header[len(_PREFIX) :].strip())
    except AuthError as exc:
        raise NotAuthorizedException(str(exc)) from None


async def require_role(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Guard: a valid token whose role is the handler's ``opt["role"]`` (default admin) or admin. Async on purpose:
    Litestar runs a sync guard in a worker thread, and checking an HS256 signature takes microseconds."""
    claims = _authenticate(connection)
    needed = handler.opt.get("role", "admin")
    if needed == "admin" and claims.role != "admin":
        raise PermissionDeniedException(f"this route needs an admin token; {claims.sub!r} has role {claims.role!r}")
    connection.state.claims = claims


def claims_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Claims:
    claims: Claims = connection.state.claims
    return claims
