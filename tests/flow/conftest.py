"""A project with workflows and flow-controlled tasks (handlers in tests/flow/handlers.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from jobkit.loader import load_project
from jobkit.model import Project

FLOW_JOBS = """
queues:
  default: {weight: 1}
defaults:
  queue: default
  max_retries: 2
  backoff: {min: 100ms, max: 200ms}
  timeout: 10s
tasks:
  flow:fetch: {handler: "tests.flow.handlers:fetch"}
  flow:double: {handler: "tests.flow.handlers:double"}
  flow:square: {handler: "tests.flow.handlers:square"}
  flow:total: {handler: "tests.flow.handlers:total"}
  flow:once: {handler: "tests.flow.handlers:tick", unique: 1m}
  flow:once_per_n: {handler: "tests.flow.handlers:tick", unique: 1m, unique_key: "{{ n }}"}
  flow:rated: {handler: "tests.flow.handlers:tick", rate_limit: 10/s, max_retries: 0}
  flow:capped: {handler: "tests.flow.handlers:tick", concurrency: 2, max_retries: 0}
workflows:
  flow:report:
    api: true
    steps:
      - task: flow:fetch
        payload: {key: "{{ input.key }}", n: "{{ input.n }}"}
      - group:
          - {task: flow:double, payload: {key: "{{ input.key }}", value: "{{ prev }}"}}
          - {task: flow:square, payload: {key: "{{ input.key }}", value: "{{ prev }}"}}
      - task: flow:total
        payload: {key: "{{ input.key }}", values: "{{ prev }}"}
"""


@pytest.fixture
def project(write_yaml: Callable[..., Path]) -> Project:
    return load_project(write_yaml(FLOW_JOBS))
