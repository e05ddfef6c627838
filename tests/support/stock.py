"""Plain Dramatiq beside jobkit: a stock ``RedisBroker`` producer on the test's Redis and namespace, and an in-process
``dramatiq.Worker`` that runs for the length of a ``with`` block."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker


def stock_broker(redis_url: str, namespace: str) -> RedisBroker:
    """Dramatiq's own Redis broker (its default middleware), as an existing Dramatiq producer runs it."""
    return RedisBroker(client=redis.Redis.from_url(redis_url), namespace=namespace)  # type: ignore[no-untyped-call]


@contextmanager
def running_worker(
    broker: dramatiq.Broker, *, threads: int = 2, prefetch: int | None = None
) -> Iterator[dramatiq.Worker]:
    """A stock ``dramatiq.Worker`` on ``broker`` (``prefetch``: messages its consumers hold per queue)."""
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    if prefetch is not None:
        worker.queue_prefetch = prefetch
    worker.start()
    try:
        yield worker
    finally:
        worker.stop(timeout=10_000)
