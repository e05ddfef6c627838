"""API bearer tokens: HS256 JWTs signed with ``JOBKIT_SECRET``, claims ``sub``, ``role`` (admin | user) and ``exp``.

PyJWT does the signing: it pins the algorithm we pass (no ``alg: none``, no RS/HS confusion), compares signatures in
constant time and refuses expired tokens. The secret is never logged or put in an error message.
"""

from __future__ import annotations

import functools
import os
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

import jwt

from jobkit.config.settings import Settings
from jobkit.errors import AuthError, JobkitError

__all__ = ["ROLES", "AuthError", "Claims", "ensure_secret", "load_secret", "mint_token", "verify_token"]

Role = Literal["admin", "user"]
ROLES: tuple[Role, ...] = ("admin", "user")
ALGORITHM = "HS256"
#: A secret shorter than this is refused: HS256 keys should carry at least 256 bits.
MIN_SECRET_LENGTH = 32
SECRET_FILE = "secret"


@dataclass(frozen=True)
class Claims:
    sub: str
    role: Role
    exp: int


def _check_secret(secret: str) -> str:
    if len(secret) < MIN_SECRET_LENGTH:
        raise JobkitError(
            f"JOBKIT_SECRET is too short ({len(secret)} characters): use at least {MIN_SECRET_LENGTH}, "
            "e.g. the output of `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
        )
    return secret


def mint_token(secret: str, sub: str, role: str, ttl: timedelta = timedelta(hours=1)) -> str:
    """A signed token for ``sub`` with ``role``, valid for ``ttl``."""
    if role not in ROLES:
        raise JobkitError(f"role {role!r}: expected admin or user")
    if not sub:
        raise JobkitError("sub: give a name for the token's holder")
    if ttl.total_seconds() <= 0:
        raise JobkitError(f"ttl must be positive, found {ttl}")
    claims = {"sub": sub, "role": role, "exp": int(time.time() + ttl.total_seconds())}
    return jwt.encode(claims, _check_secret(secret), algorithm=ALGORITHM)


def verify_token(secret: str, token: str) -> Claims:
    """The token's claims; raises :class:`AuthError` (without echoing the token) when it is not valid."""
    claims = _verified(secret, token)
    if claims.exp <= time.time():  # checked on every use: a remembered token still expires on time
        raise AuthError("token expired")
    return claims


@functools.lru_cache(maxsize=4096)
def _verified(secret: str, token: str) -> Claims:
    """Signature and claims checked once per token: a signed token never changes, so the result is remembered
    (failures raise and are not)."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "role", "exp"], "verify_exp": True}
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidTokenError:
        raise AuthError("invalid token") from None
    role, sub, exp = claims.get("role"), claims.get("sub"), claims.get("exp")
    if role not in ROLES or not isinstance(sub, str) or not isinstance(exp, int):
        raise AuthError("invalid token claims")
    return Claims(sub=sub, role=role, exp=exp)


def load_secret(settings: Settings) -> str | None:
    """``JOBKIT_SECRET``, else the secret ``jobkit up`` wrote in the data dir, else None."""
    if settings.secret:
        return _check_secret(settings.secret)
    path = settings.data_dir / SECRET_FILE
    if path.is_file():
        return _check_secret(path.read_text().strip())
    return None


def ensure_secret(settings: Settings) -> str:
    """The secret from :func:`load_secret`, or a new one written to ``<data dir>/secret`` (mode 0600)."""
    found = load_secret(settings)
    if found is not None:
        return found
    path: Path = settings.data_dir / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret
