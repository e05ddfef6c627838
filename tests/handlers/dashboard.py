"""Task handlers of the dashboard tests."""

from __future__ import annotations

import os
import time
from functools import cache

import redis

import jobkit


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


def stepped(steps: int, pause: float) -> dict[str, int]:
    """Works through ``steps`` steps of ``pause`` seconds, reporting its progress after each, and says how many."""
    for step in range(steps):
        jobkit.progress(step, steps, note="steps")
        time.sleep(pause)
    jobkit.progress(steps, steps, note="steps")
    return {"rows": steps}


def nap(seconds: float) -> None:
    """Sleeps in 0.1 s steps for ``seconds``: a task to cancel while it runs."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.1)
