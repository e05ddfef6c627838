"""Completed records are bounded by age and by count as the acks write them, with no timed pass (issue 17)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dramatiq
import pytest
import redis

from jobkit.errors import TaskNotFound
from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support import wait_for

RETENTION_JOBS = """
queues: {default: {weight: 1}, brief: {weight: 1}, mixed: {weight: 1}}
tasks:
  r:capped: {handler: "tests.handlers:accept", retention: {for: 1h, max: 100}}
  r:brief: {handler: "tests.handlers:accept", retention: 1s, queue: brief}
  r:small: {handler: "tests.handlers:accept", retention: {for: 1h, max: 100}, queue: mixed}
  r:wide: {handler: "tests.handlers:accept", retention: {for: 1h, max: 300}, queue: mixed}
"""


@contextmanager
def worker_without_timed_passes(client: Client, threads: int) -> Iterator[dramatiq.Worker]:
    """A real worker whose consumers never run their maintenance pass: whatever is trimmed, the acks trimmed."""
    client.broker.maintenance_interval = float("inf")
    worker = dramatiq.Worker(client.broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop(timeout=10_000)


def test_a_count_cap_keeps_exactly_the_newest_records_inspectable(
    make_client: Callable[[str], Client], redis_client: redis.Redis, namespace: str
) -> None:
    client = make_client(RETENTION_JOBS)
    queues = Queues(client)
    refs = client.dispatch_many("r:capped", [{"n": n} for n in range(1000)])
    # One thread takes the queue in order, so the newest completions are the last 100 dispatched.
    with worker_without_timed_passes(client, threads=1):
        wait_for(lambda: queues.stats("default").processed_total == 1000, timeout=50, what="1,000 completions")

    newest = {ref.id for ref in refs[-100:]}
    total, kept = queues.tasks("default", "completed", page=1, size=1000)
    assert total == 100
    assert {info.id for info in kept} == newest
    assert queues.stats("default").completed == 100
    # What Redis holds is exactly those records, each with what inspection shows.
    assert redis_client.zcard(f"{namespace}:default.done") == 100
    assert redis_client.hlen(f"{namespace}:default.done.msgs") == 100
    last = queues.task("default", refs[-1].id)
    assert (last.state, last.payload, last.completed_at is not None) == ("completed", {"n": 999}, True)
    with pytest.raises(TaskNotFound):
        queues.task("default", refs[899].id)  # the newest record the cap dropped


def test_a_short_retention_leaves_nothing_behind_without_a_timed_pass(
    make_client: Callable[[str], Client], redis_client: redis.Redis, namespace: str
) -> None:
    client = make_client(RETENTION_JOBS)
    queues = Queues(client)
    client.dispatch_many("r:brief", [{"n": n} for n in range(300)])
    with worker_without_timed_passes(client, threads=4):
        wait_for(lambda: queues.stats("brief").processed_total == 300, timeout=50, what="300 completions")
        finished = time.monotonic()
        done_keys = (f"{namespace}:brief.done", f"{namespace}:brief.done.msgs")
        # Redis itself drops the records' keys once the last retention (1 s) ends; the worker stays up and idle.
        wait_for(lambda: redis_client.exists(*done_keys) == 0, timeout=2.0, what="the completed records to go")
        assert time.monotonic() - finished < 2.0
    assert queues.stats("brief").completed == 0
    assert queues.tasks("brief", "completed")[0] == 0


def test_tasks_of_one_queue_share_the_largest_cap_any_of_them_declares(make_client: Callable[[str], Client]) -> None:
    # One set of completed records per queue: the cap is the largest declared (300), so the records of the task
    # that asks for 300 are never dropped by completions of the one that asks for 100.
    client = make_client(RETENTION_JOBS)
    queues = Queues(client)
    wide = client.dispatch_many("r:wide", [{"n": n} for n in range(100)])
    small = client.dispatch_many("r:small", [{"n": n} for n in range(250)])
    with worker_without_timed_passes(client, threads=1):
        wait_for(lambda: queues.stats("mixed").processed_total == 350, timeout=50, what="350 completions")
        total, kept = queues.tasks("mixed", "completed", page=1, size=1000)
        assert (total, {info.id for info in kept}) == (300, {ref.id for ref in [*wide[-50:], *small]})


ARCHIVE_JOBS = """
queues: {default: {weight: 1}}
tasks:
  r:ok: {handler: "tests.handlers:accept"}
  r:fails: {handler: "tests.handlers:always_fails", max_retries: 0}
"""


def test_the_archived_cap_holds_for_failures_and_for_what_an_operator_archived_in_bulk(
    make_client: Callable[[str], Client], redis_client: redis.Redis, namespace: str
) -> None:
    client = make_client(ARCHIVE_JOBS)
    client.broker.dead_max = 50
    queues = Queues(client)
    # An operator archives 300 pending tasks at once: the set is far past its cap, and nothing has trimmed it yet.
    client.dispatch_many("r:ok", [{"n": n} for n in range(300)])
    assert queues.archive_all_pending("default") == 300
    assert queues.stats("default").archived == 300
    client.dispatch_many("r:ok", [{"n": n} for n in range(100)])
    with worker_without_timed_passes(client, threads=2):
        # Each completion drops a few of the surplus (100 acks x 4 > 250); no maintenance pass runs.
        wait_for(lambda: queues.stats("default").processed_total == 100, timeout=50, what="100 completions")
        assert queues.stats("default").archived == 50
        # Failures are archived one by one, each trimming the set back to its cap.
        client.dispatch_many("r:fails", [{"key": f"{namespace}:f"} for _ in range(30)])
        wait_for(lambda: queues.stats("default").processed_total == 130, timeout=50, what="30 failures")
    assert queues.stats("default").archived == 50
    assert redis_client.hlen(f"{namespace}:default.XQ.msgs") == 50
    assert redis_client.hlen(f"{namespace}:default.ids") == 50  # the index forgets what the cap dropped
    total, newest = queues.tasks("default", "archived", size=30)
    assert total == 50 and all(info.task == "r:fails" for info in newest)  # the 30 failures are the newest
