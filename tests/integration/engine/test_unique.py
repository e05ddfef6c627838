"""Unique tasks: one lock per task + payload (or unique_key), released when the task completes, is archived or
deleted."""

from __future__ import annotations

import threading

import dramatiq
import pytest
import redis

from jobkit import DuplicateTask
from jobkit.services.client import Client, TaskRef
from jobkit.services.queues import Queues
from tests.support import uses_project, wait_for
from tests.support.projects import FLOW_JOBS

project = uses_project(FLOW_JOBS)


def test_fifty_concurrent_dispatches_of_a_unique_task_enqueue_exactly_one(
    client: Client, redis_client: redis.Redis, namespace: str, broker: dramatiq.Broker
) -> None:
    # Given a task with unique: 1m, dispatched 50 times with the same payload from 5 threads at once
    key = f"{namespace}:once"
    accepted: list[TaskRef] = []
    refused: list[DuplicateTask] = []
    barrier = threading.Barrier(5)

    def dispatch_ten() -> None:
        barrier.wait()
        for _ in range(10):
            try:
                accepted.append(client.dispatch("flow:once", key=key))
            except DuplicateTask as exc:
                refused.append(exc)

    threads = [threading.Thread(target=dispatch_ten) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then exactly one is enqueued and the 49 others name it
    assert len(accepted) == 1 and len(refused) == 49
    assert {exc.existing_id for exc in refused} == {accepted[0].id}
    assert redis_client.llen(f"{namespace}:default") == 1

    # When a worker completes it, a new dispatch is accepted
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        wait_for(lambda: redis_client.get(f"{key}:done") == b"1", what="the task to complete")
        wait_for(
            lambda: not list(redis_client.scan_iter(client.keys.unique("flow:once", "*"))), what="the lock released"
        )
        assert client.dispatch("flow:once", key=key).id != accepted[0].id
    finally:
        worker.stop(timeout=10_000)


def test_a_different_payload_or_unique_key_is_a_different_lock(client: Client, namespace: str) -> None:
    client.dispatch("flow:once", key=f"{namespace}:a")
    client.dispatch("flow:once", key=f"{namespace}:b")
    client.dispatch("flow:once_per_n", key=f"{namespace}:a", n=1)
    with pytest.raises(DuplicateTask):
        client.dispatch("flow:once_per_n", key=f"{namespace}:other", n=1)  # same n: same key


def test_deleting_a_unique_task_releases_its_lock(client: Client, namespace: str) -> None:
    first = client.dispatch("flow:once", key=f"{namespace}:d")

    Queues(client).delete(first.queue, first.id)

    assert client.dispatch("flow:once", key=f"{namespace}:d").id != first.id


def test_archiving_a_unique_task_releases_its_lock(
    client: Client, broker: dramatiq.Broker, redis_client: redis.Redis, namespace: str
) -> None:
    # Given a unique task whose payload makes its handler fail (a wrong type), with no retries
    first = client.dispatch("flow:once", key=f"{namespace}:x", n="not a number", max_retries=0)
    redis_client.set(f"{namespace}:x:running", "oops")  # incr fails on a non-integer: the attempt raises
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        wait_for(lambda: Queues(client).task("default", first.id).state == "archived", what="archived")
    finally:
        worker.stop(timeout=10_000)

    assert client.dispatch("flow:once", key=f"{namespace}:x").id != first.id
