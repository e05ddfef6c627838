"""Fixtures every kind of test may use. The real redis-server is started only by the tests that ask for it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jobkit.store.embedded import EmbeddedRedis
from tests.support.databases import MariaDbServer, PostgresServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """A real redis-server for the whole session, on a Unix socket in a short temporary directory."""
    directory = Path(tempfile.mkdtemp(prefix="jk-redis-"))
    server = EmbeddedRedis(directory, appendonly=False).start()
    os.environ["JOBKIT_TEST_REDIS_URL"] = server.url
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL for the whole session (started on first use), on a Unix socket in a temp dir."""
    try:
        server = PostgresServer().start()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"cannot start PostgreSQL for the tests: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDbServer]:
    """A private MariaDB for the whole session (started on first use), on a Unix socket in a temp dir."""
    try:
        server = MariaDbServer().start()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"cannot start MariaDB for the tests: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[..., Path]:
    def write(text: str, name: str = "jobs.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Subprocesses started with :func:`start`; each whole process group is killed at the end."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the whole group: Dramatiq's worker processes too
        process.wait()
