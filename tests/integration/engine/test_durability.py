"""durability: replicated on a real primary and replica: the id comes back only once the replica has the task; a
replica that cannot answer (stalled, or none at all) makes the dispatch fail instead of returning an id it may lose."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from jobkit.bootstrap import open_client
from jobkit.config.jobs_file import load_project
from jobkit.config.settings import Settings
from jobkit.engine.broker import REPLICATION_TIMEOUT_MS
from jobkit.errors import NotReplicated
from jobkit.services.client import Client
from tests.support import wait_for
from tests.support.projects import REPLICATED_JOBS
from tests.support.replication import RedisNode

T = TypeVar("T")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RedisNode, RedisNode]]:
    primary = RedisNode(tmp_path, "primary")
    replica = RedisNode(tmp_path, "replica", "--replicaof", "127.0.0.1", str(primary.port))
    probe = primary.client()
    wait_for(lambda: probe.info("replication")["connected_slaves"] == 1, what="the replica to connect")
    yield primary, replica
    replica.stop()
    primary.stop()


@pytest.fixture
def make(write_yaml: Callable[..., Path], namespace: str, tmp_path: Path) -> Callable[[int], Client]:
    def make(port: int) -> Client:
        settings = Settings(redis_url=f"redis://127.0.0.1:{port}/0", namespace=namespace, data_dir=tmp_path / "var")
        return open_client(settings, load_project(write_yaml(REPLICATED_JOBS)))

    return make


def _in_a_fresh_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on an event loop of its own thread (the test's thread may have one already)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _on(node: RedisNode, namespace: str) -> int:
    return int(node.client().hlen(f"{namespace}:default.msgs"))


def test_a_replicated_dispatch_returns_once_the_replica_has_the_task(
    pair: tuple[RedisNode, RedisNode], make: Callable[[int], Client], namespace: str
) -> None:
    primary, replica = pair
    client = make(primary.port)

    for _ in range(20):
        client.dispatch("test:safe")
        # Read at once, on the replica: every acknowledged task is there already.
        assert _on(replica, namespace) == _on(primary, namespace)

    assert _on(replica, namespace) == 20


def test_a_stalled_replica_fails_the_replicated_dispatch_but_not_the_async_one(
    pair: tuple[RedisNode, RedisNode], make: Callable[[int], Client], namespace: str
) -> None:
    primary, replica = pair
    client = make(primary.port)
    client.dispatch("test:safe")  # connections and scripts ready
    # Given a replica that stops answering for longer than the replication timeout
    stall = 2 * REPLICATION_TIMEOUT_MS / 1000 + 1.5
    stalled = replica.client(socket_timeout=10)
    sleeper = threading.Thread(target=lambda: stalled.execute_command("DEBUG", "SLEEP", stall))  # type: ignore[no-untyped-call]
    sleeper.start()
    time.sleep(0.2)
    try:
        started = time.monotonic()
        client.dispatch("test:fast")  # the default: returns without waiting
        assert time.monotonic() - started < 0.5

        started = time.monotonic()
        with pytest.raises(NotReplicated, match="no replica acknowledged the task within 2000 ms"):
            client.dispatch("test:safe")
        took = time.monotonic() - started
        assert REPLICATION_TIMEOUT_MS / 1000 - 0.1 < took < REPLICATION_TIMEOUT_MS / 1000 + 1
        with pytest.raises(NotReplicated):  # the API's asyncio path
            _in_a_fresh_loop(client.dispatch_async("test:safe"))
    finally:
        sleeper.join()


def test_without_any_replica_a_replicated_dispatch_fails(make: Callable[[int], Client], tmp_path: Path) -> None:
    alone = RedisNode(tmp_path, "alone")
    try:
        client = make(alone.port)
        assert client.dispatch("test:fast").id
        with pytest.raises(NotReplicated):
            client.dispatch("test:safe")
    finally:
        alone.stop()


def test_the_api_path_waits_for_the_replica_too(
    pair: tuple[RedisNode, RedisNode], make: Callable[[int], Client], namespace: str
) -> None:
    primary, replica = pair
    client = make(primary.port)

    async def burst() -> list[str]:
        refs = await asyncio.gather(*(client.dispatch_async("test:safe") for _ in range(50)))
        return [ref.id for ref in refs]

    ids = _in_a_fresh_loop(burst())

    assert len(set(ids)) == 50
    assert _on(replica, namespace) == 50
    probe: redis.Redis = replica.client()
    assert probe.info("replication")["role"] == "slave"
