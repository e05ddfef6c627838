"""Handlers of the task-lifecycle tests: results, cancellation, progress."""

from __future__ import annotations

import os
import time
from functools import cache
from typing import Any

import redis

import jobkit


@cache
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def _mark(key: str, what: str) -> None:
    _redis(os.environ["JOBKIT_TEST_REDIS_URL"]).rpush(f"{key}:{what}", repr(time.time()))


def rows(n: int) -> dict[str, int]:
    return {"rows": n}


def no_rows(n: int) -> None:
    raise RuntimeError(f"no rows today ({n})")


def secret_result(token: str) -> dict[str, Any]:
    return {"token": token, "ok": True}


def too_big(size: int) -> str:
    return "x" * size


def not_json() -> object:
    return {1, 2}


def nap_loop(key: str, seconds: float = 30.0) -> None:
    """Sleeps in 0.1 s steps: what a cancel interrupts between two sleeps (or inside one)."""
    _mark(key, "started")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.1)
    _mark(key, "finished")


def nap_once(key: str, seconds: float = 30.0) -> None:
    """One long blocking sleep: what only an interruptible sleep lets a cancel stop."""
    _mark(key, "started")
    time.sleep(seconds)
    _mark(key, "finished")


def steady(key: str, seconds: float) -> str:
    """Runs beside canceled tasks and must not be disturbed."""
    _mark(key, "started")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.02)
    _mark(key, "finished")
    return "steady"


def counted(key: str, n: int, report: bool = True) -> int:
    """A loop of ``n`` iterations, reporting progress on each when ``report``; records its run time."""
    started = time.perf_counter()
    total = 0
    for i in range(n):
        total += i * i % 7
        if report:
            jobkit.progress(i + 1, n, note="iterations")
    _redis(os.environ["JOBKIT_TEST_REDIS_URL"]).rpush(f"{key}:took", repr(time.perf_counter() - started))
    return total


def leaky(token: str) -> dict[str, Any]:
    """Quotes its sensitive token in a progress note and in a result field that is not declared sensitive."""
    jobkit.progress(1, 2, note=f"sending token {token} to a@b.c")
    return {"token": token, "echo": f"token was {token}", "nested": [{"again": token}]}


def refuse_key(url: str) -> None:
    """Fails with an error that quotes one value of the URL's (sensitive) query string."""
    from urllib.parse import parse_qs, urlsplit

    raise RuntimeError(f"receiver refused key {parse_qs(urlsplit(url).query)['api_key'][0]}")
