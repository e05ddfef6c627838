"""Queue stats walked through every state, checked field by field."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import cast

import dramatiq
import pytest
import redis

from jobkit.engine.broker import JobkitConsumer
from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support import wait_for

STATE_JOBS = """
queues: {default: {weight: 1}, low: {weight: 1}}
tasks:
  t:record: {handler: "tests.handlers:record"}
  t:fails_slowly: {handler: "tests.handlers:always_fails", max_retries: 5, backoff: {min: 1h, max: 2h}}
  t:permanent: {handler: "tests.handlers:permanent"}
  t:slow: {handler: "tests.handlers:slow", timeout: 1m}
"""


@pytest.fixture
def state_client(make_client: Callable[[str], Client]) -> Client:
    return make_client(STATE_JOBS)


@pytest.fixture
def state_worker(state_client: Client) -> Iterator[dramatiq.Worker]:
    worker = dramatiq.Worker(state_client.broker, worker_threads=2, worker_timeout=100)
    worker.start()
    yield worker
    worker.stop(timeout=20_000)


def test_stats_follow_a_task_through_every_state(
    state_client: Client, state_worker: dramatiq.Worker, redis_client: redis.Redis, namespace: str
) -> None:
    queues = Queues(state_client)
    key = f"{namespace}:k"
    assert queues.stats("default").to_dict() == {
        "queue": "default", "pending": 0, "active": 0, "scheduled": 0, "retry": 0, "archived": 0,
        "completed": 0, "paused": False, "size": 0, "latency_ms": 0, "processed": 0, "failed": 0,
        "processed_total": 0, "failed_total": 0,
    }  # fmt: skip

    # Given one task completed, one archived, one waiting for its retry and one running
    state_client.dispatch("t:record", key=key)
    wait_for(lambda: queues.stats("default").completed == 1, what="completed")
    state_client.dispatch("t:permanent", key=key)
    wait_for(lambda: queues.stats("default").archived == 1, what="archived")
    state_client.dispatch("t:fails_slowly", key=key)
    wait_for(lambda: queues.stats("default").retry == 1, what="retry")
    state_client.dispatch("t:slow", key=f"{key}:slow", seconds=3)
    wait_for(lambda: queues.stats("default").active == 1, what="active")
    # and, with the queue paused, two pending and one scheduled an hour ahead
    queues.pause("default")
    consumer = cast(JobkitConsumer, state_worker.consumers["default"].consumer)
    wait_for(lambda: consumer.paused, what="the worker to see the pause")
    first_sent = time.time()
    state_client.dispatch("t:record", key=key)
    state_client.dispatch("t:record", key=key)
    state_client.dispatch("t:record", key=key, delay=3600)
    sent = time.monotonic()
    # the worker asks for work after they were sent (and, the queue being paused, takes none: they stay pending)
    wait_for(lambda: consumer.last_call > sent, what="a fetch after the dispatches")
    time.sleep(max(0.0, first_sent + 0.3 - time.time()))  # the latency must grow past 300 ms: time has to pass

    # Then every field is exact
    fields = queues.stats("default").to_dict()
    latency = fields.pop("latency_ms")
    assert (time.time() - first_sent) * 1000 + 5 >= latency >= 300
    assert fields == {
        "queue": "default", "pending": 2, "active": 1, "scheduled": 1, "retry": 1, "archived": 1,
        "completed": 1, "paused": True, "size": 5, "processed": 3, "failed": 2,
        "processed_total": 3, "failed_total": 2,
    }  # fmt: skip
    assert queues.stats("low").size == 0

    # When the running task ends and the queue resumes, the pending ones complete too
    queues.resume("default")
    wait_for(lambda: queues.stats("default").completed == 4, timeout=15, what="4 completed")
    stats = queues.stats("default")
    assert (stats.pending, stats.active, stats.paused, stats.size) == (0, 0, False, 2)
    assert (stats.processed, stats.failed, stats.latency_ms) == (6, 2, 0)
    history = queues.history(7)
    today = [row for row in history if row["queue"] == "default"][-1]
    assert (today["processed"], today["failed"]) == (6, 2)
    assert len(history) == 14


def test_latency_reads_the_message_times_not_payload_fields_of_the_same_name(state_client: Client) -> None:
    queues = Queues(state_client)
    decoy = {"options": {"jobkit_due": 1}, "message_timestamp": 1}
    state_client.dispatch("t:record", key="k", value=decoy)

    latency = queues.stats("default").latency_ms

    assert 0 <= latency < 5_000
