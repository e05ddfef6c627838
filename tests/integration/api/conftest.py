"""The API under Litestar's test client, on the session's real Redis, with the tests' own jobs.yaml."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from jobkit.api import create_app
from jobkit.services.client import Client
from tests.support import uses_project
from tests.support.projects import API_JOBS
from tests.support.tokens import SECRET, bearer

project = uses_project(API_JOBS)


@pytest.fixture
def app(client: Client) -> Litestar:
    return create_app(client=client, secret=SECRET)


@pytest.fixture
def http(app: Litestar) -> Iterator[TestClient[Litestar]]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def admin() -> dict[str, str]:
    return bearer("admin", "admin")


@pytest.fixture
def user() -> dict[str, str]:
    return bearer("user", "1")
