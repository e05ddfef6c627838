"""Task handlers used by the tests. Each records its attempts in Redis (JOBKIT_TEST_REDIS_URL) under ``key``."""

from __future__ import annotations

import os
import time
from functools import cache

import redis

from jobkit import SkipRetry


@cache
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def _record(key: str) -> int:
    client = _redis(os.environ["JOBKIT_TEST_REDIS_URL"])
    client.rpush(f"{key}:times", repr(time.time()))
    return int(client.incr(f"{key}:count"))


def record(key: str, value: str = "") -> None:
    _record(key)


def flaky(key: str, failures: int) -> None:
    """Fails ``failures`` times, then succeeds."""
    if _record(key) <= failures:
        raise RuntimeError(f"flaky failure number {_redis(os.environ['JOBKIT_TEST_REDIS_URL']).get(key + ':count')!r}")


def always_fails(key: str) -> None:
    attempt = _record(key)
    raise ConnectionError(f"attempt {attempt} failed")


def permanent(key: str) -> None:
    _record(key)
    raise SkipRetry("bad input, do not retry")


def bad_value(key: str) -> None:
    _record(key)
    raise ValueError("listed in skip_retry_on")


def slow(key: str, seconds: float) -> None:
    """Records a start, sleeps, then records a finish under ``key:done``."""
    _record(key)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # a loop, so a time limit can interrupt it
        time.sleep(0.01)
    _redis(os.environ["JOBKIT_TEST_REDIS_URL"]).incr(f"{key}:done")


def noop() -> None:
    return None


def accept(**payload: object) -> None:
    """Takes any payload and does nothing (the search tests only store tasks)."""
    return None


def greet(name: str, greeting: str = "hello", *, loud: bool = False) -> None:
    return None


NOT_A_FUNCTION = 42


def tag(key: str, tag: str) -> None:
    """Records ``tag`` in start order under ``key`` (for priority tests)."""
    _redis(os.environ["JOBKIT_TEST_REDIS_URL"]).rpush(key, f"{tag} {time.time()!r}")


def work(key: str, n: int, seconds: float = 0.0) -> None:
    """Counts each run of task ``n`` (duplicates show as counts above 1), and the runs of each worker process."""
    client = _redis(os.environ["JOBKIT_TEST_REDIS_URL"])
    now = time.time()
    client.hincrby(f"{key}:pids", str(os.getpid()), 1)
    client.hincrby(f"{key}:starts", str(n), 1)
    client.hset(f"{key}:last_start", str(n), repr(now))
    client.rpush(f"{key}:start_times", repr(now))
    if seconds:
        time.sleep(seconds)
    client.hincrby(f"{key}:runs", str(n), 1)


def probe(key: str, tag: str, namespace: str) -> None:
    """Records ``tag`` and how many tasks of each heavier queue were still waiting (in Redis or in this worker's
    buffer) when this one started."""
    from jobkit.facade import get_client

    client = _redis(os.environ["JOBKIT_TEST_REDIS_URL"])
    arbiter = get_client().broker.work_queue
    assert arbiter is not None
    waiting = [client.llen(f"{namespace}:{q}") + arbiter.buffered(q) for q in ("critical", "default")]
    client.rpush(key, f"{tag} {waiting[0]} {waiting[1]}")
