"""Redis replication for the durability and fail-over tests: redis-server nodes on 127.0.0.1 TCP ports (a primary, its
replicas, Sentinels), and a relay that plays a slow link between a primary and its replica.

The relay holds what the primary sends its replica for ``delay`` seconds before passing it on, as a link to a replica
in another zone would; ``cut()`` drops what it holds, as the primary's host dying takes its unsent bytes with it. The
replica's answers (its acknowledgements, ``REPLCONF ACK``) go back at once.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobkit.store.embedded import find_redis_server
from tests.support import wait_for

__all__ = ["LagRelay", "RedisNode", "free_port", "start_sentinels"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisNode:
    """One redis-server (or Sentinel) on 127.0.0.1:``port``, with no persistence, killed or stopped by the test."""

    def __init__(self, directory: Path, name: str, *args: str, sentinel_conf: str | None = None) -> None:
        self.directory = directory / name
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.name = name
        argv = [find_redis_server()]
        if sentinel_conf is not None:
            conf = self.directory / "sentinel.conf"
            conf.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n{sentinel_conf}")
            argv += [str(conf), "--sentinel"]
        else:
            argv += ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
            argv += ["--save", "", "--appendonly", "no", *args]
        argv += ["--logfile", str(self.directory / "redis.log")]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # No retries: redis-py's default retries a refused connection ten times with back-off (seconds per probe).
        probe = self.client(socket_timeout=0.5, retry=Retry(NoBackoff(), 0))
        wait_for(lambda: _answers(probe), timeout=10, what=f"redis {name} on port {self.port}")
        probe.close()

    def client(self, **options: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **options)  # type: ignore[arg-type]

    def kill(self) -> None:
        """``kill -9``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.AuthenticationError, redis.ResponseError):  # NOAUTH: it is up
        return True
    except (redis.ConnectionError, redis.TimeoutError):
        return False


def start_sentinels(directory: Path, master: str, primary_port: int, password: str, count: int = 3) -> list[RedisNode]:
    """``count`` Sentinels watching ``primary_port`` as ``master`` (quorum 2): a primary that stops answering for
    one second is failed over."""
    conf = (
        f"requirepass {password}\n"
        f"sentinel sentinel-pass {password}\n"
        f"sentinel monitor {master} 127.0.0.1 {primary_port} 2\n"
        f"sentinel auth-pass {master} {password}\n"
        f"sentinel down-after-milliseconds {master} 1000\n"
        # Also how long a Sentinel leaves a replica that follows another address than the primary's (the relay's)
        # before it repoints it: longer than any test.
        f"sentinel failover-timeout {master} 120000\n"
        f"sentinel parallel-syncs {master} 1\n"
    )
    return [RedisNode(directory, f"sentinel{i}", sentinel_conf=conf) for i in range(count)]


class LagRelay:
    """127.0.0.1:``port`` forwarding to 127.0.0.1:``target``; bytes from the target are held ``delay`` seconds."""

    def __init__(self, target: int, delay: float) -> None:
        self.target = target
        self.delay = delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.cut_off = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.cut_off.is_set():
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_off.is_set():
                downstream.close()
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [downstream, upstream]
            held: queue.Queue[tuple[float, bytes]] = queue.Queue()
            threading.Thread(target=self._read, args=(upstream, held), daemon=True).start()
            threading.Thread(target=self._write, args=(held, downstream), daemon=True).start()
            threading.Thread(target=self._copy, args=(downstream, upstream), daemon=True).start()

    def _read(self, source: socket.socket, held: queue.Queue[tuple[float, bytes]]) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                held.put((time.monotonic() + self.delay, data))

    def _write(self, held: queue.Queue[tuple[float, bytes]], target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not self.cut_off.is_set():
                try:
                    due, data = held.get(timeout=0.1)
                except queue.Empty:
                    continue
                while not self.cut_off.is_set() and time.monotonic() < due:
                    time.sleep(min(0.005, max(due - time.monotonic(), 0)))
                if self.cut_off.is_set():
                    return  # what was held dies with the link
                target.sendall(data)

    def _copy(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not self.cut_off.is_set() and (data := source.recv(65536)):
                target.sendall(data)

    def cut(self) -> None:
        """Drop everything held and every connection; accept no more."""
        self.cut_off.set()
        for sock in [self.listener, *self.sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
