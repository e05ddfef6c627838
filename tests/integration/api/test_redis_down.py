"""With Redis stopped every route answers 503 within 2 s; when it is back they work again without a restart."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from jobkit.api import create_app
from jobkit.bootstrap import open_client
from jobkit.config.jobs_file import load_project
from jobkit.config.settings import Settings
from jobkit.store.embedded import EmbeddedRedis
from tests.support.projects import API_JOBS
from tests.support.routes import ADMIN_ROUTES, USER_ROUTES
from tests.support.tokens import SECRET, bearer

OPEN_ROUTES = [("GET", "/health", None), ("GET", "/metrics", None)]


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    directory = Path(tempfile.mkdtemp(prefix="jk-down-"))
    server = EmbeddedRedis(directory, appendonly=False).start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


def test_every_route_answers_503_fast_while_redis_is_down_and_recovers(
    own_redis: EmbeddedRedis, write_yaml: Callable[..., Path], tmp_path: Path
) -> None:
    settings = Settings(redis_url=own_redis.url, namespace="down", data_dir=tmp_path / "var")
    client = open_client(settings, load_project(write_yaml(API_JOBS)))
    admin = bearer("admin", "admin")
    routes = ADMIN_ROUTES + USER_ROUTES + OPEN_ROUTES
    with TestClient(create_app(client=client, secret=SECRET)) as http:
        for method, url, body in routes:  # warm the pool: stale connections must not hide the outage
            assert http.request(method, url, json=body, headers=admin).status_code < 500, url

        own_redis.stop()
        for method, url, body in routes:
            started = time.monotonic()
            response = http.request(method, url, json=body, headers=admin)
            elapsed = time.monotonic() - started
            assert response.status_code == 503, (url, response.text)
            assert elapsed < 2.0, (url, elapsed)
            if url != "/health":
                assert response.json() == {"status_code": 503, "detail": "Redis is unreachable; try again shortly"}

        own_redis.start()
        for method, url, body in routes:
            response = http.request(method, url, json=body, headers=admin)
            assert response.status_code < 500, (url, response.text)


def test_a_trigger_on_a_stalled_redis_answers_503_fast_and_the_next_one_works_once_it_answers(
    own_redis: EmbeddedRedis, write_yaml: Callable[..., Path], tmp_path: Path
) -> None:
    settings = Settings(redis_url=own_redis.url, namespace="stall", data_dir=tmp_path / "var")
    client = open_client(settings, load_project(write_yaml(API_JOBS)))
    pid = int(client.redis.info("server")["process_id"])
    method, url, body = USER_ROUTES[2]  # one task, one script call
    admin = bearer("admin", "admin")
    with TestClient(create_app(client=client, secret=SECRET)) as http:
        assert http.request(method, url, json=body, headers=admin).status_code == 202  # the batch's connection is up
        os.kill(pid, signal.SIGSTOP)  # accepts and buffers, answers nothing: the replies' deadline decides
        try:
            started = time.monotonic()
            response = http.request(method, url, json=body, headers=admin)
            elapsed = time.monotonic() - started
        finally:
            os.kill(pid, signal.SIGCONT)
        assert response.status_code == 503, response.text
        assert elapsed < 2.0, elapsed
        # The connection that timed out was dropped (its late replies would answer the next batch's calls): the
        # next trigger gets its own reply.
        response = http.request(method, url, json=body, headers=admin)
        assert response.status_code == 202, response.text
        task_id = response.json()["task_id"]
        assert client.redis.hget(client.keys.ids("default"), task_id) is not None
