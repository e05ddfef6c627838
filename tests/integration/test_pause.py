"""Pause and resume: stored in Redis, seen by workers within a second, nothing dropped or duplicated."""

from __future__ import annotations

import time
from collections.abc import Callable

import dramatiq
import pytest
import redis
from dramatiq.message import Message

from jobkit.client import Client
from jobkit.inspector import Queues
from tests.conftest import wait_for

PAUSE_JOBS = """
queues: {default: {weight: 3}, low: {weight: 1}}
tasks:
  t:work: {handler: "tests.handlers:work", queue: low}
"""
TASKS = 3000


@pytest.fixture
def pause_client(make_client: Callable[[str], Client]) -> Client:
    return make_client(PAUSE_JOBS)


@pytest.mark.slow
def test_pause_stops_starts_within_a_second_for_60s_without_loss_and_resume_drains(
    pause_client: Client, redis_client: redis.Redis, namespace: str
) -> None:
    queues = Queues(pause_client)
    broker = pause_client.broker
    key = f"{namespace}:w"
    for n in range(TASKS):
        broker.enqueue(
            Message(
                queue_name="low",
                actor_name="t:work",
                args=(),
                kwargs={"key": key, "n": n, "seconds": 0.005},
                options={},
            )
        )
    worker = dramatiq.Worker(broker, worker_threads=8, worker_timeout=100)
    worker.start()
    try:
        # When low is paused while it drains
        wait_for(lambda: redis_client.hlen(f"{key}:runs") >= 300, timeout=30, what="300 runs")
        queues.pause("low")
        paused_at = time.time()

        # Then for 60 s: no task starts more than 1 s after pause() returned, and the worker stays alive
        heartbeats = f"{namespace}:__heartbeats__"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            beat = redis_client.zscore(heartbeats, broker.broker_id)
            assert beat is not None and time.time() * 1000 - beat < broker.heartbeat_timeout, "worker looked dead"
            time.sleep(0.5)  # sampling a 60-second window, not waiting for an event
        starts = [float(t) for t in redis_client.lrange(f"{key}:start_times", 0, -1)]
        late = [t - paused_at for t in starts if t > paused_at + 1.0]
        assert late == [], f"{len(late)} task(s) started after the pause took effect"
        stats = queues.stats("low")
        assert stats.paused and stats.pending == TASKS - len(starts) and stats.active == 0

        # When it resumes, it drains: every task ran exactly once
        queues.resume("low")
        wait_for(lambda: redis_client.hlen(f"{key}:runs") == TASKS, timeout=60, what="all tasks to run")
    finally:
        worker.stop(timeout=20_000)
    runs = {int(n): int(c) for n, c in redis_client.hgetall(f"{key}:runs").items()}
    assert set(runs) == set(range(TASKS))
    assert set(runs.values()) == {1}
    assert queues.stats("low").size == 0
