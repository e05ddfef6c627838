"""API bearer tokens for the tests, signed with the tests' own secret."""

from __future__ import annotations

from datetime import timedelta

from jobkit.services.auth import mint_token

SECRET = "test-secret-" + "x" * 40


def bearer(
    role: str = "admin", sub: str = "1", ttl: timedelta = timedelta(minutes=5), secret: str = SECRET
) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(secret, sub, role, ttl)}"}
