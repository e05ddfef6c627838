"""Task handlers for the workflow and flow-control tests; they record what they saw in Redis under ``key``."""

from __future__ import annotations

import os
import time
from functools import cache

import redis

from jobkit import SkipRetry


@cache
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def _client() -> redis.Redis:
    return _redis(os.environ["JOBKIT_TEST_REDIS_URL"])


def fetch(key: str, n: int) -> int:
    _client().rpush(f"{key}:order", "fetch")
    return n


def double(key: str, value: int) -> int:
    if _client().get(f"{key}:fail"):
        _client().rpush(f"{key}:order", "double failed")
        raise SkipRetry("double was told to fail")
    _client().rpush(f"{key}:order", "double")
    return value * 2


def square(key: str, value: int) -> int:
    _client().rpush(f"{key}:order", "square")
    return value * value


def total(key: str, values: list[int]) -> int:
    _client().rpush(f"{key}:order", "total")
    return sum(values)


def tick(key: str, n: int = 0, seconds: float = 0.0) -> None:
    """Records its start time and the most tasks of its kind ever running at once."""
    client = _client()
    client.rpush(f"{key}:starts", repr(time.time()))
    running = client.incr(f"{key}:running")
    client.eval(
        "if tonumber(redis.call('get', KEYS[1]) or 0) < tonumber(ARGV[1]) then redis.call('set', KEYS[1], ARGV[1]) end",
        1,
        f"{key}:max",
        running,
    )
    if seconds:
        time.sleep(seconds)
    client.decr(f"{key}:running")
    client.incr(f"{key}:done")
