"""REDIS_SENTINELS: the broker finds the master through a real Sentinel (the same redis-server binary, in sentinel
mode), and the API's async dispatch falls back to the blocking path there."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import pytest
import redis

from jobkit.bootstrap import build_broker
from jobkit.config.model import Project
from jobkit.config.settings import Settings
from jobkit.services.client import Client
from jobkit.store.embedded import EmbeddedRedis, find_redis_server
from tests.support import wait_for


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def sentinel() -> Iterator[tuple[int, int]]:
    """A master on 127.0.0.1 and one Sentinel watching it as 'jobkit-master': (master port, sentinel port)."""
    directory = Path(tempfile.mkdtemp(prefix="jk-sentinel-"))
    master_port, sentinel_port = free_port(), free_port()
    master = EmbeddedRedis(directory / "master", port=master_port, appendonly=False).start()
    config = directory / "sentinel.conf"
    config.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {directory}\n"
        f"sentinel monitor jobkit-master 127.0.0.1 {master_port} 1\n"
    )
    process = subprocess.Popen(
        [find_redis_server(), str(config), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        probe = redis.Redis(host="127.0.0.1", port=sentinel_port, socket_timeout=1)
        wait_for(lambda: _masters(probe), timeout=10, what="the sentinel to know the master")
        yield master_port, sentinel_port
    finally:
        process.terminate()
        process.wait(10)
        master.stop()


def _masters(probe: redis.Redis) -> bool:
    try:
        # redis-py leaves Redis.execute_command unannotated
        return bool(probe.execute_command("SENTINEL", "masters"))  # type: ignore[no-untyped-call]
    except redis.RedisError:
        return False


def test_dispatch_through_sentinel_reaches_the_master(
    sentinel: tuple[int, int], project: Project, namespace: str
) -> None:
    master_port, sentinel_port = sentinel
    env = {"REDIS_SENTINELS": f"127.0.0.1:{sentinel_port}", "REDIS_SENTINEL_MASTER": "jobkit-master"}
    settings = Settings.from_env({**env, "JOBKIT_NAMESPACE": namespace}, dotenv=None)
    client = Client(settings, project, build_broker(settings, project))

    ref = client.dispatch("test:record", key="k")
    # In a thread of its own: the session's browser tests keep an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        ref_async = pool.submit(asyncio.run, client.dispatch_async("test:record", key="k2")).result()

    master = redis.Redis(host="127.0.0.1", port=master_port)
    assert master.hlen(f"{namespace}:default.ids") == 2
    assert {ref.id, ref_async.id} == {m.decode() for m in cast(list[bytes], master.hkeys(f"{namespace}:default.ids"))}
