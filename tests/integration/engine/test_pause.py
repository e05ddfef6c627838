"""Pause and resume: stored in Redis, seen by workers within a second, nothing dropped or duplicated.

The worker runs on a shortened clock (heartbeat timeout 3 s instead of 15 s, maintenance every 1 s instead of
5 s), so the paused window spans four heartbeat timeouts and a dozen maintenance passes, as 60 s do on the default
clock, in a fifth of the time. The one-second bound on a pause taking effect comes from the consumers' polls (200
and 250 ms), which the shorter clock does not change."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import dramatiq
import pytest
import redis
from dramatiq.message import Message

from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support import wait_for

PAUSE_JOBS = """
queues: {default: {weight: 3}, low: {weight: 1}}
tasks:
  t:work: {handler: "tests.handlers:work", queue: low}
"""
TASKS = 3000
HEARTBEAT_TIMEOUT = timedelta(seconds=3)
#: Four heartbeat timeouts: a worker that stopped beating, or a pause that leaked, shows within it.
PAUSED_FOR_S = 4 * HEARTBEAT_TIMEOUT.total_seconds()


@pytest.fixture
def pause_client(make_client: Callable[..., Client]) -> Client:
    return make_client(PAUSE_JOBS, heartbeat_timeout=HEARTBEAT_TIMEOUT)


@pytest.mark.slow
def test_pause_stops_starts_within_a_second_for_four_heartbeat_timeouts_without_loss_and_resume_drains(
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

        # Then for four heartbeat timeouts: no task starts more than 1 s after pause() returned, and the worker
        # stays alive
        assert broker.heartbeat_timeout == 3000 and broker.maintenance_interval == 1.0
        heartbeats = pause_client.keys.heartbeats
        deadline = time.monotonic() + PAUSED_FOR_S
        while time.monotonic() < deadline:
            beat = redis_client.zscore(heartbeats, broker.broker_id)
            assert beat is not None and time.time() * 1000 - beat < broker.heartbeat_timeout, "worker looked dead"
            time.sleep(0.1)  # sampling the paused window, not waiting for an event
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
