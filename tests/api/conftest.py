"""The API under Litestar's test client, on the session's real Redis, with the tests' own jobs.yaml."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from jobkit.api import create_app
from jobkit.auth import mint_token
from jobkit.client import Client
from jobkit.loader import load_project
from jobkit.model import Project

SECRET = "test-secret-" + "x" * 40

API_JOBS = """
queues:
  critical: {weight: 6}
  default: {weight: 3}
  low: {weight: 1}
defaults:
  queue: default
  max_retries: 3
tasks:
  email:send: {handler: "tests.api.handlers:send_email", api: true}
  export:process: {handler: "tests.api.handlers:process_export", queue: low}
  test:greet: {handler: "tests.api.handlers:greet", api: true}
  test:internal: {handler: "tests.api.handlers:internal"}
exports:
  posts_by_user:
    sql: "SELECT id, title FROM posts WHERE user_id = :user_id"
"""


@pytest.fixture
def project(write_yaml: Callable[..., Path]) -> Project:
    return load_project(write_yaml(API_JOBS))


@pytest.fixture
def app(client: Client) -> Litestar:
    return create_app(client=client, secret=SECRET)


@pytest.fixture
def http(app: Litestar) -> Iterator[TestClient[Litestar]]:
    with TestClient(app) as test_client:
        yield test_client


def bearer(
    role: str = "admin", sub: str = "1", ttl: timedelta = timedelta(minutes=5), secret: str = SECRET
) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(secret, sub, role, ttl)}"}


@pytest.fixture
def admin() -> dict[str, str]:
    return bearer("admin", "admin")


@pytest.fixture
def user() -> dict[str, str]:
    return bearer("user", "1")
