"""Fixtures of the CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobkit.config.settings import Settings
from jobkit.services.client import Client
from tests.support.tokens import SECRET


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings, client: Client, tmp_path: Path) -> None:
    """The CLI reads the environment: point it at the test's Redis, namespace and jobs.yaml (and its project)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", str(settings.redis_url))
    monkeypatch.setenv("JOBKIT_NAMESPACE", settings.namespace)
    monkeypatch.setenv("JOBKIT_JOBS", str(settings.jobs_path))
    monkeypatch.setenv("JOBKIT_SECRET", SECRET)
