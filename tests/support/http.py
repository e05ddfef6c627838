"""The API tests' client type and the check of an error answer."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import TestClient

Http = TestClient[Litestar]


def is_error(response: Any, status: int, *words: str) -> None:
    """``response`` is the API's error body with ``status``, its detail naming each of ``words``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"status_code", "detail"} and body["status_code"] == status, body
    for word in words:
        assert word in body["detail"], body
