"""One path in: a ``unique`` task's lock holds for a dispatch, a scheduler's fire and a workflow step alike."""

from __future__ import annotations

import time
from typing import Any, cast

import pytest
import redis
from dramatiq.message import Message

from jobkit import DuplicateTask
from jobkit.scheduling.dynamic import Schedules
from jobkit.scheduling.fire_loop import Scheduler
from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support import FakeClock, uses_project

UNIQUE_JOBS = """
queues:
  default: {weight: 1}
defaults:
  queue: default
tasks:
  flow:fetch: {handler: "tests.handlers.flow:fetch"}
  flow:sync: {handler: "tests.handlers.flow:tick", unique: 10m}
workflows:
  flow:then_sync:
    steps:
      - task: flow:fetch
        payload: {key: "{{ input.key }}", n: 1}
      - task: flow:sync
        payload: {key: "{{ input.key }}"}
  flow:sync_first:
    steps:
      - task: flow:sync
        payload: {key: "{{ input.key }}"}
      - task: flow:fetch
        payload: {key: "{{ input.key }}", n: 1}
"""


project = uses_project(UNIQUE_JOBS)


def pending(redis_client: redis.Redis, client: Client) -> int:
    return int(redis_client.llen(client.keys.pending("default")))


def test_a_schedule_firing_while_the_lock_is_held_enqueues_nothing_and_counts_each_skip(
    client: Client, redis_client: redis.Redis, namespace: str
) -> None:
    # Given a unique: 10m task dispatched once (its lock is held while it waits) and an @every 1s entry for the same
    # payload, watched by three schedulers on one fake clock
    key = f"{namespace}:sync"
    holder = client.dispatch("flow:sync", key=key)
    entry = Schedules(client).recurring("flow:sync", {"key": key}, every="1s")
    clock = FakeClock(time.time())  # the entry's first fire is the next whole second
    schedulers = [Scheduler(client, clock=clock) for _ in range(3)]
    for scheduler in schedulers:
        scheduler.tick()
    assert sum(scheduler.skipped + scheduler.enqueued for scheduler in schedulers) == 0

    # When the entry falls due three times
    for _ in range(3):
        clock.now += 1.0
        for scheduler in schedulers:
            scheduler.tick()

    # Then nothing more was enqueued: the one dispatched task is all that waits
    assert pending(redis_client, client) == 1
    assert [info.id for info in Queues(client).tasks("default", "pending")[1]] == [holder.id]
    # And each of the three skipped fires shows once in the entry's info, whichever scheduler saw it
    info = next(info for info in Schedules(client).list() if info.id == entry)
    assert info.skipped == 3
    assert sum(scheduler.skipped for scheduler in schedulers) == 3
    assert sum(scheduler.enqueued for scheduler in schedulers) == 0


def test_a_schedule_fires_again_once_the_lock_is_released(
    client: Client, redis_client: redis.Redis, namespace: str
) -> None:
    key = f"{namespace}:sync"
    holder = client.dispatch("flow:sync", key=key)
    Schedules(client).recurring("flow:sync", {"key": key}, every="1s")
    clock = FakeClock(time.time())
    scheduler = Scheduler(client, clock=clock)
    scheduler.tick()
    clock.now += 1.0
    scheduler.tick()
    assert (scheduler.enqueued, scheduler.skipped) == (0, 1)

    Queues(client).delete("default", holder.id)  # the lock ends with the task
    clock.now += 1.0
    scheduler.tick()

    assert (scheduler.enqueued, scheduler.skipped) == (1, 1)
    assert pending(redis_client, client) == 1


def test_a_workflow_step_whose_lock_is_held_fails_the_run_naming_the_holder(
    client: Client, redis_client: redis.Redis, namespace: str
) -> None:
    # Given the unique task already queued with the payload the workflow's second step will render
    key = f"{namespace}:sync"
    holder = client.dispatch("flow:sync", key=key)
    run = client.dispatch("flow:then_sync", key=key)

    # When the first step completes (its member reports as a worker's middleware would)
    first = Queues(client).tasks("default", "pending")[1]
    fetch = next(info for info in first if info.task == "flow:fetch")
    message = next(m for m in _messages(redis_client, client) if m.message_id == fetch.id)
    client.workflows.member_started(message)
    client.workflows.member_completed(message, [1])

    # Then the second step was not enqueued, and the run failed at it with the holder named
    state = Queues(client).workflow(run.id)
    assert state["status"] == "failed" and state["failed_step"] == 1
    assert state["error"].startswith("DuplicateTask: flow:sync: a task with the same unique key")
    assert holder.id in state["error"]
    assert [m.actor_name for m in _messages(redis_client, client)].count("flow:sync") == 1


def test_a_workflow_whose_first_step_is_held_is_refused_like_a_dispatch(client: Client, namespace: str) -> None:
    key = f"{namespace}:sync"
    holder = client.dispatch("flow:sync", key=key)

    with pytest.raises(DuplicateTask) as refused:
        client.dispatch("flow:sync_first", key=key)

    assert refused.value.existing_id == holder.id


def _messages(redis_client: redis.Redis, client: Client) -> list[Message[Any]]:
    return [Message.decode(raw) for raw in cast(list[bytes], redis_client.hvals(client.keys.messages("default")))]
