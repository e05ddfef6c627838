"""A task no running worker knows waits (retrying, with a clear last_error) instead of being archived, and runs once
a worker that knows it is there."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import dramatiq
import pytest

from jobkit.services.client import Client
from jobkit.services.queues import Queues
from jobkit.services.system import System
from tests.support import wait_for

OLD_JOBS = """
queues: {default: {weight: 1}}
tasks:
  t:old: {handler: "tests.handlers.lifecycle:rows"}
"""
NEW_JOBS = (
    OLD_JOBS
    + """
  t:new: {handler: "tests.handlers.lifecycle:rows"}
"""
)


@pytest.fixture
def workers() -> Iterator[list[dramatiq.Worker]]:
    started: list[dramatiq.Worker] = []
    yield started
    for worker in started:
        worker.stop(timeout=10_000)


def _start(client: Client, workers: list[dramatiq.Worker]) -> dramatiq.Worker:
    worker = dramatiq.Worker(client.broker, worker_threads=2, worker_timeout=100)
    worker.start()
    workers.append(worker)
    return worker


def test_a_task_the_worker_does_not_know_waits_with_a_clear_error_then_runs_on_a_worker_that_does(
    make_client: Callable[..., Client], workers: list[dramatiq.Worker]
) -> None:
    old = make_client(OLD_JOBS)  # the worker still running the jobs.yaml of before the edit
    new = make_client(NEW_JOBS)  # what dispatches after the edit
    _start(old, workers)
    queues = Queues(new)

    ref = new.dispatch("t:new", n=4)

    info = wait_for(lambda: (t := queues.task("default", ref.id)).state == "retry" and t, what="it to wait")
    assert info.last_error == "no worker knows task 't:new' yet — restart workers after editing jobs.yaml"
    assert info.retried == 0
    stats = queues.stats("default")
    assert (stats.archived, stats.processed, stats.failed) == (0, 0, 0)
    # What `jobkit stats`, the API's task types and the dashboard read: the worker advertises what it serves.
    assert {t.task: t.served for t in System(new).task_types()} == {"t:old": True, "t:new": False}

    _start(new, workers)  # the restarted worker, which knows the task

    assert ref.result(timeout=20) == {"rows": 4}
    assert {t.task: t.served for t in System(new).task_types()} == {"t:old": True, "t:new": True}
    assert queues.stats("default").archived == 0
