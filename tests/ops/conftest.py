"""Fixtures for reports, alerts and the health check: a project with alert rules posting to a real webhook receiver
on 127.0.0.1, and the built-in tests' SMTP server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jobkit.loader import load_project
from jobkit.model import Project
from tests.builtin.conftest import smtp_server  # noqa: F401  (a fixture, shared)
from tests.webhook import Receiver, webhook_receiver

OPS_JOBS = """
queues:
  critical: {{weight: 6}}
  default: {{weight: 3}}
  low: {{weight: 1}}
defaults:
  queue: default
  max_retries: 1
  backoff: {{min: 50ms, max: 100ms}}
  timeout: 10s
tasks:
  test:record: {{handler: "tests.handlers:record"}}
  test:permanent: {{handler: "tests.handlers:permanent"}}
  test:always_fails: {{handler: "tests.handlers:always_fails", queue: low}}
  test:noop: {{handler: "tests.handlers:noop", queue: low}}
  notification:send: {{handler: "jobkit.actors.notification:send_notification", queue: critical}}
  report:generate: {{handler: "jobkit.actors.report:generate_report"}}
  system:health_check: {{handler: "jobkit.actors.system:health_check", max_retries: 0}}
alerts:
  dead-tasks: {{when: archived, queues: [default], channels: [{{webhook: "{url}"}}, log], cooldown: 2s}}
  slow-low: {{when: latency, queue: low, over: 50ms, channels: [{{webhook: "{url}"}}], cooldown: 1h}}
  failing: {{when: failure_rate, queue: default, over: 0.5, window: 1m, min_processed: 2,
             channels: [{{webhook: "{url}"}}], cooldown: 1h}}
  dead-growth: {{when: archived_growth, queue: default, over: 2, window: 1h, channels: [{{webhook: "{url}"}}],
                 cooldown: 1h}}
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver("/hook", default_status=204) as state:
        yield state


@pytest.fixture
def project(write_yaml: Callable[..., Path], receiver: Receiver) -> Project:
    return load_project(write_yaml(OPS_JOBS.format(url=receiver.url)))
