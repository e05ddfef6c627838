"""Fixtures: one real redis-server per session (a key namespace per test), projects from YAML text, workers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis

from jobkit.broker import JobkitBroker
from jobkit.client import Client, set_client
from jobkit.loader import load_project
from jobkit.model import Project
from jobkit.redis_server import EmbeddedRedis
from jobkit.runtime import build_broker
from jobkit.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
JOBKIT = str(Path(sys.executable).parent / "jobkit")

TEST_JOBS = """
queues:
  critical: {weight: 6}
  default: {weight: 3}
  low: {weight: 1}
defaults:
  queue: default
  max_retries: 3
  backoff: {min: 100ms, max: 400ms}
  timeout: 10s
tasks:
  test:record: {handler: "tests.handlers:record"}
  test:flaky: {handler: "tests.handlers:flaky", max_retries: 3}
  test:always_fails: {handler: "tests.handlers:always_fails", max_retries: 2}
  test:permanent: {handler: "tests.handlers:permanent"}
  test:bad_value: {handler: "tests.handlers:bad_value", skip_retry_on: [ValueError]}
  test:slow: {handler: "tests.handlers:slow", timeout: 1s, max_retries: 1}
  test:noop: {handler: "tests.handlers:noop", queue: low}
  test:greet: {handler: "tests.handlers:greet"}
"""


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """A real redis-server for the whole session, on a Unix socket in a short temporary directory."""
    directory = Path(tempfile.mkdtemp(prefix="jk-redis-"))
    server = EmbeddedRedis(directory, appendonly=False).start()
    os.environ["JOBKIT_TEST_REDIS_URL"] = server.url
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_client(redis_url: str, namespace: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    keys = list(client.scan_iter(f"{namespace}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[..., Path]:
    def write(text: str, name: str = "jobs.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


@pytest.fixture
def settings(redis_url: str, namespace: str, tmp_path: Path) -> Settings:
    return Settings(
        redis_url=redis_url, namespace=namespace, data_dir=tmp_path / "var", jobs_path=tmp_path / "jobs.yaml"
    )


@pytest.fixture
def project(write_yaml: Callable[..., Path]) -> Project:
    return load_project(write_yaml(TEST_JOBS))


@pytest.fixture
def broker(settings: Settings, project: Project, redis_client: redis.Redis) -> Iterator[JobkitBroker]:
    broker = build_broker(settings, project)
    broker.emit_after("process_boot")
    yield broker
    broker.close()


@pytest.fixture
def client(settings: Settings, project: Project, broker: JobkitBroker) -> Iterator[Client]:
    client = Client(settings, project, broker)
    set_client(client)
    yield client
    set_client(None)


@pytest.fixture
def make_client(
    settings: Settings, write_yaml: Callable[..., Path], redis_client: redis.Redis
) -> Iterator[Callable[[str], Client]]:
    """A client (and its broker, booted) on a project written from YAML text: for tests that need their own tasks."""
    brokers: list[JobkitBroker] = []

    def make(yaml_text: str) -> Client:
        project = load_project(write_yaml(yaml_text))
        broker = build_broker(settings, project)
        broker.emit_after("process_boot")
        brokers.append(broker)
        return Client(settings, project, broker)

    yield make
    for broker in brokers:
        broker.close()


@pytest.fixture
def worker(broker: JobkitBroker) -> Iterator[dramatiq.Worker]:
    """A real Dramatiq worker in this process (4 threads) on the test's broker."""
    worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=100)
    worker.start()
    yield worker
    worker.stop(timeout=10_000)


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


def attempts(client: redis.Redis, key: str) -> list[float]:
    return [float(t) for t in client.lrange(f"{key}:times", 0, -1)]


# -- subprocesses ------------------------------------------------------------------------------------------------------
@pytest.fixture
def env(redis_url: str, namespace: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a jobkit/dramatiq subprocess on the test's Redis and namespace."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "JOBKIT_")) and k != "PYTHONPATH"}
    environment.update(
        REDIS_URL=redis_url,
        JOBKIT_NAMESPACE=namespace,
        JOBKIT_TEST_REDIS_URL=redis_url,
        JOBKIT_DATA_DIR=str(tmp_path / "var"),
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    return environment


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Subprocesses started with :func:`start`; each whole process group is killed at the end."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the whole group: Dramatiq's worker processes too
        process.wait()


def start(
    processes: list[subprocess.Popen[str]], argv: list[str], env: dict[str, str], cwd: Path, log: Path
) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    processes.append(process)
    return process
