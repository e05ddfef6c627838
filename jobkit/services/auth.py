"""API bearer tokens: HS256 JWTs signed with ``JOBKIT_SECRET``, claims ``sub``, ``role`` (admin | viewer | user),
``exp`` and ``jti`` (the token's id, which ``jobkit token revoke`` names).

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
from typing import Literal, cast

import jwt
import redis

from jobkit.config.settings import Settings
from jobkit.durations import format_duration
from jobkit.engine.sealing import Sealer
from jobkit.errors import AuthError, JobkitError
from jobkit.store.files import private_directory
from jobkit.store.keys import Keys

__all__ = [
    "ROLES",
    "AuthError",
    "Claims",
    "Revocations",
    "ensure_secret",
    "load_secret",
    "mint_token",
    "sealer_for",
    "sealing_secrets",
    "verify_token",
]

Role = Literal["admin", "viewer", "user"]
#: admin: everything; viewer: every read, no change; user: trigger ``api: true`` tasks and read the ones it triggered.
ROLES: tuple[Role, ...] = ("admin", "viewer", "user")
#: How long a revocation may take to reach a running API process.
REVOCATION_REFRESH_S = 1.0
ALGORITHM = "HS256"
#: A secret shorter than this is refused: HS256 keys should carry at least 256 bits.
MIN_SECRET_LENGTH = 32
SECRET_FILE = "secret"


@dataclass(frozen=True)
class Claims:
    sub: str
    role: Role
    exp: int
    jti: str = ""
    """The token's id (tokens minted before ids existed have none, and cannot be revoked one by one)."""


def _check_secret(secret: str) -> str:
    if len(secret) < MIN_SECRET_LENGTH:
        raise JobkitError(
            f"JOBKIT_SECRET is too short ({len(secret)} characters): use at least {MIN_SECRET_LENGTH}, "
            "e.g. the output of `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
        )
    return secret


def mint_token(
    secret: str, sub: str, role: str, ttl: timedelta = timedelta(hours=1), max_ttl: timedelta = timedelta(days=30)
) -> str:
    """A signed token for ``sub`` with ``role``, valid for ``ttl`` (at most ``max_ttl``, ``JOBKIT_TOKEN_MAX_TTL``)."""
    if role not in ROLES:
        raise JobkitError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    if not sub:
        raise JobkitError("sub: give a name for the token's holder")
    if ttl.total_seconds() <= 0:
        raise JobkitError(f"ttl must be positive, found {ttl}")
    if ttl > max_ttl:
        raise JobkitError(
            f"ttl {format_duration(ttl)} is longer than a token may live ({format_duration(max_ttl)}; "
            "JOBKIT_TOKEN_MAX_TTL raises the cap)"
        )
    claims = {"sub": sub, "role": role, "exp": int(time.time() + ttl.total_seconds()), "jti": secrets.token_hex(8)}
    return jwt.encode(claims, _check_secret(secret), algorithm=ALGORITHM)


def token_id(token: str) -> str:
    """The ``jti`` of a token (not verified: for printing the id of a token just minted)."""
    return str(jwt.decode(token, options={"verify_signature": False}).get("jti", ""))


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
    role, sub, exp, jti = claims.get("role"), claims.get("sub"), claims.get("exp"), claims.get("jti", "")
    if role not in ROLES or not isinstance(sub, str) or not isinstance(exp, int) or not isinstance(jti, str):
        raise AuthError("invalid token claims")
    return Claims(sub=sub, role=role, exp=exp, jti=jti)


def sealing_secrets(settings: Settings) -> tuple[str, ...]:
    """What seals sensitive fields: ``JOBKIT_ENCRYPTION_KEY`` (current key first), else ``JOBKIT_SECRET`` or the
    secret ``jobkit up`` wrote; empty when there is none."""
    if settings.encryption_keys:
        return settings.encryption_keys
    secret = load_secret(settings)
    return (secret,) if secret else ()


def sealer_for(settings: Settings) -> Sealer | None:
    """The :class:`~jobkit.engine.sealing.Sealer` of ``settings``, or None when no key is configured."""
    secrets = sealing_secrets(settings)
    return Sealer(secrets) if secrets else None


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
    private_directory(path.parent)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret


class Revocations:
    """Revoked token ids, in Redis (``K.revoked_tokens``: id -> when the token expires anyway). A process reads them
    at most every :data:`REVOCATION_REFRESH_S`, so a revocation reaches every API process within that."""

    def __init__(self, client: redis.Redis, keys: Keys, refresh_s: float = REVOCATION_REFRESH_S) -> None:
        self.redis = client
        self.key = keys.revoked_tokens
        self.refresh_s = refresh_s
        self._ids: frozenset[str] = frozenset()
        self._read_at = -refresh_s

    def revoke(self, jti: str, expires_at: int | None = None) -> None:
        """Refuse the token ``jti`` from now on (kept until it would have expired, 30 days when that is unknown)."""
        if not jti:
            raise JobkitError("give the id of the token to revoke (jobkit token prints it when it mints one)")
        now = int(time.time())
        self.redis.hset(self.key, jti, expires_at or now + 30 * 86_400)
        self._read_at = -self.refresh_s

    def stale(self) -> bool:
        return time.monotonic() - self._read_at >= self.refresh_s

    def refresh(self) -> None:
        now = int(time.time())
        found = cast(dict[bytes, bytes], self.redis.hgetall(self.key))
        expired = [jti for jti, exp in found.items() if int(exp) < now]
        if expired:
            self.redis.hdel(self.key, *expired)
        self._ids = frozenset(jti.decode() for jti, exp in found.items() if int(exp) >= now)
        self._read_at = time.monotonic()

    def revoked(self, jti: str) -> bool:
        """True for a revoked token (reads Redis when the list is older than the refresh interval)."""
        if self.stale():
            self.refresh()
        return bool(jti) and jti in self._ids
