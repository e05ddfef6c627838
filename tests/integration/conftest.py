"""Fixtures of the integration tests: the session's real redis-server with a key namespace per test, the default
project, a booted broker and client, an in-process worker, subprocess environments, the real SMTP server, the
SendGrid stand-in and the webhook receiver."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import dramatiq
import pytest
import redis

from jobkit.bootstrap import build_broker, open_client
from jobkit.config.jobs_file import load_project
from jobkit.config.model import Project
from jobkit.config.settings import Settings
from jobkit.engine.broker import JobkitBroker
from jobkit.facade import set_client
from jobkit.services.client import Client
from jobkit.store.embedded import EmbeddedRedis
from tests.support import ROOT, uses_project
from tests.support.projects import TEST_JOBS
from tests.support.sendgrid import SendGridStandIn, sendgrid_stand_in
from tests.support.smtp import SmtpServer
from tests.support.tokens import SECRET
from tests.support.webhook import Receiver, webhook_receiver


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
def settings(redis_url: str, namespace: str, tmp_path: Path) -> Settings:
    return Settings(
        redis_url=redis_url,
        namespace=namespace,
        data_dir=tmp_path / "var",
        jobs_path=tmp_path / "jobs.yaml",
        secret=SECRET,  # also the key that seals sensitive fields
    )


project = uses_project(TEST_JOBS)


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
) -> Iterator[Callable[..., Client]]:
    """A client (and its broker, booted) on a project written from YAML text: for tests that need their own tasks.
    ``make(yaml_text, heartbeat_timeout=timedelta(...))`` runs its workers on a shorter clock."""
    brokers: list[JobkitBroker] = []

    def make(yaml_text: str, heartbeat_timeout: timedelta | None = None) -> Client:
        client = open_client(settings, load_project(write_yaml(yaml_text)), heartbeat_timeout=heartbeat_timeout)
        client.broker.emit_after("process_boot")
        brokers.append(client.broker)
        return client

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
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on 127.0.0.1, not started yet (a test may play one that is down first)."""
    server = SmtpServer()
    yield server
    server.stop()


@pytest.fixture
def sendgrid(tmp_path: Path) -> Iterator[SendGridStandIn]:
    """SendGrid's v3 Mail Send endpoint played on https://127.0.0.1:<port>, with a CA made for this test only."""
    with sendgrid_stand_in(tmp_path / "sendgrid-tls") as stand_in:
        yield stand_in


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real webhook receiver on 127.0.0.1 answering 204."""
    with webhook_receiver("/hook", default_status=204) as state:
        yield state
