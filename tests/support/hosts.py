"""Test "hosts": network namespaces the test makes and removes itself, each host with its own network, PID and
hostname namespace, linked to a Redis namespace by a veth pair, and one Redis reached over TCP with a password.

Addresses come from 198.18.0.0/15, the block set aside for benchmarking network devices (RFC 2544): each host
``i`` is 198.18.i.2 on its end of its link and Redis is 198.18.i.1 on the other end. They exist only on those links,
inside the fixture's own namespaces, so traffic goes between them and nowhere else. The test process itself talks
to that Redis over a Unix socket (a file: any network namespace can open it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis

from jobkit.store.embedded import find_redis_server
from tests.support import ROOT, wait_for

__all__ = ["Host", "Hosts", "NamespaceError"]

PASSWORD = "hosts-redis-pw"


class NamespaceError(RuntimeError):
    """Network namespaces cannot be made here."""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NamespaceError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")


@dataclass
class Host:
    name: str
    index: int
    netns: str
    link: str  # the host's end of its veth pair
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"198.18.{self.index}.2"

    @property
    def redis_address(self) -> str:
        return f"198.18.{self.index}.1"


@dataclass
class Hosts:
    """``count`` hosts and the Redis they share; :meth:`close` removes every namespace and process."""

    directory: Path
    count: int = 3
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    hosts: list[Host] = field(default_factory=list)
    redis_process: subprocess.Popen[bytes] | None = None
    namespaces: list[str] = field(default_factory=list)

    @property
    def redis_netns(self) -> str:
        return f"jk{self.tag}r"

    @property
    def socket(self) -> Path:
        return self.directory / "redis.sock"

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket), password=PASSWORD)

    def url_for(self, host: Host) -> str:
        return f"redis://:{PASSWORD}@{host.redis_address}:6379/0"

    def open(self) -> Hosts:
        if shutil.which("ip") is None or shutil.which("unshare") is None:
            raise NamespaceError("`ip` (iproute2) and `unshare` (util-linux) are needed to make the test hosts")
        if os.geteuid() != 0:
            raise NamespaceError("making network namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._netns(self.redis_netns)
        for index in range(1, self.count + 1):
            host = Host(f"host{index}", index, f"jk{self.tag}h{index}", f"jk{self.tag}a{index}")
            self._netns(host.netns)
            peer = f"jk{self.tag}b{index}"
            _ip("link", "add", host.link, "netns", host.netns, "type", "veth", "peer", "name", peer, "netns",
                self.redis_netns)  # fmt: skip
            _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", host.link)
            _ip("-n", host.netns, "link", "set", host.link, "up")
            _ip("-n", self.redis_netns, "addr", "add", f"{host.redis_address}/24", "dev", peer)
            _ip("-n", self.redis_netns, "link", "set", peer, "up")
            self.hosts.append(host)
        binds = " ".join(host.redis_address for host in self.hosts)
        self.redis_process = subprocess.Popen(
            ["ip", "netns", "exec", self.redis_netns, find_redis_server(), "--bind", *binds.split(), "--port", "6379",
             "--requirepass", PASSWORD, "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", str(self.directory),
             "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        probe = self.client()
        wait_for(lambda: self.socket.exists() and _pings(probe), timeout=10, what="the hosts' Redis")
        return self

    def _netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def start(self, host: Host, env: Mapping[str, str]) -> None:
        """Run a worker and a scheduler on ``host``, under a PID 1 of its own (:mod:`tests.support.host_init`)."""
        ready = self.directory / f"{host.name}.ready"
        ready.unlink(missing_ok=True)
        host_env = {**env, "REDIS_URL": self.url_for(host), "JOBKIT_TEST_REDIS_URL": self.url_for(host)}
        process = host.process = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, "unshare", "--pid", "--uts", "--mount", "--fork", "--kill-child",
             "--mount-proc", sys.executable, "-m", "tests.support.host_init", host.name, str(self.directory)],
            env=host_env, cwd=ROOT, stdout=(self.directory / f"{host.name}.init.log").open("w"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(lambda: ready.exists() or process.poll() is not None, timeout=60, what=f"{host.name} to start")
        if not ready.exists():
            log = (self.directory / f"{host.name}.init.log").read_text()
            raise AssertionError(f"{host.name} did not start:\n{log[-3000:]}")

    def kill(self, host: Host) -> None:
        """``kill -9`` of every process of ``host``: its PID 1 dies, and the kernel kills the rest of its namespace."""
        if host.process is not None and host.process.poll() is None:
            host.process.send_signal(signal.SIGKILL)  # unshare --kill-child: its child, PID 1, gets SIGKILL
            host.process.wait()

    def cut(self, host: Host) -> None:
        _ip("-n", host.netns, "link", "set", host.link, "down")

    def restore(self, host: Host) -> None:
        _ip("-n", host.netns, "link", "set", host.link, "up")

    def close(self) -> None:
        for host in self.hosts:
            self.kill(host)
        if self.redis_process is not None and self.redis_process.poll() is None:
            self.redis_process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.redis_process.wait(10)
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, FileNotFoundError):
        return False
