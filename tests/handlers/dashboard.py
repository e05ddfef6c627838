"""Task handlers of the dashboard tests."""

from __future__ import annotations

import os
from functools import cache

import redis


@cache
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def fragile(key: str, word: str) -> None:
    """Fails its first attempt with an error that names ``word`` (inside markup), succeeds afterwards."""
    if int(_redis(os.environ["JOBKIT_TEST_REDIS_URL"]).incr(key)) == 1:
        raise RuntimeError(f"the <b>{word}</b> printer is on fire")


def greet(name: str) -> None:
    return None


def echo(value: object) -> object:
    return value
