"""Helpers the tests share (imported from here, never from a conftest): waiting with a deadline, attempts recorded by
the test handlers, subprocesses, a fake clock, and fixtures for a test module's own project."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from jobkit.config.jobs_file import load_project
from jobkit.config.model import Project

ROOT = Path(__file__).resolve().parents[2]
JOBKIT = str(Path(sys.executable).parent / "jobkit")


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
    """The start times the test handlers recorded under ``key``."""
    return [float(t) for t in client.lrange(f"{key}:times", 0, -1)]


def start(
    processes: list[subprocess.Popen[str]], argv: list[str], env: dict[str, str], cwd: Path, log: Path
) -> subprocess.Popen[str]:
    """Start ``argv`` in its own session, output to ``log``; the ``processes`` fixture kills its group at the end."""
    process = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    processes.append(process)
    return process


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def children(pid: int) -> dict[int, str]:
    """The live child processes of ``pid`` (from /proc), each with its command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, parent = (entry / "stat").read_text().rpartition(")")[2].split()[:2]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if int(parent) == pid and state != "Z":
            found[int(entry.name)] = command
    return found


def forget_package(name: str) -> None:
    """Drop ``name`` and its modules from the import cache: each project a test makes has its own (``tasks``)."""
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]


class FakeClock:
    """A clock a test moves by hand (``Scheduler(clock=...)``)."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def uses_project(text: str) -> Any:
    """A ``project`` fixture for one test module: ``project = uses_project(FLOW_JOBS)``."""

    @pytest.fixture
    def project(write_yaml: Callable[..., Path]) -> Project:
        return load_project(write_yaml(text))

    return project
