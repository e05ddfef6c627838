"""Task operations by id and per queue, including the refusals."""

from __future__ import annotations

from collections.abc import Callable

import dramatiq
import pytest
import redis

from jobkit.errors import TaskNotFound, TaskStateError, UnknownQueue
from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support import attempts, wait_for

OPS_JOBS = """
queues: {default: {weight: 1}}
tasks:
  t:record: {handler: "tests.handlers:record", retention: 1h}
  t:fails_slowly: {handler: "tests.handlers:always_fails", max_retries: 1, backoff: {min: 1h, max: 2h}}
  t:flaky: {handler: "tests.handlers:flaky", max_retries: 0}
  t:slow: {handler: "tests.handlers:slow", timeout: 1m}
"""


@pytest.fixture
def ops(make_client: Callable[[str], Client]) -> Client:
    return make_client(OPS_JOBS)


@pytest.fixture
def queues(ops: Client) -> Queues:
    return Queues(ops)


def start_worker(client: Client) -> dramatiq.Worker:
    worker = dramatiq.Worker(client.broker, worker_threads=2, worker_timeout=100)
    worker.start()
    return worker


def test_info_of_a_pending_and_a_scheduled_task(ops: Client, queues: Queues, namespace: str) -> None:
    now = ops.dispatch("t:record", key=f"{namespace}:a", value="x", max_retries=7)
    later = ops.dispatch("t:record", key=f"{namespace}:b", delay=3600)

    info = queues.task("default", now.id).to_dict()
    assert info["enqueued_at"] is not None
    info.pop("enqueued_at")
    assert info == {
        "id": now.id, "queue": "default", "task": "t:record", "state": "pending",
        "payload": {"key": f"{namespace}:a", "value": "x"}, "retried": 0, "max_retries": 7, "last_error": None,
        "last_failed_at": None, "next_process_at": None, "completed_at": None, "triggered_by": None, "result": None,
        "canceled_by": None, "progress": None,
    }  # fmt: skip
    scheduled = queues.task("default", later.id)
    assert scheduled.state == "scheduled"
    assert scheduled.next_process_at is not None and scheduled.next_process_at > scheduled.enqueued_at  # type: ignore[operator]
    assert scheduled.max_retries == 3  # the task's policy


def test_unknown_ids_and_queues_are_refused(queues: Queues) -> None:
    with pytest.raises(TaskNotFound, match="no task 'nope' in queue 'default'"):
        queues.task("default", "nope")
    with pytest.raises(TaskNotFound):
        queues.delete("default", "nope")
    with pytest.raises(TaskNotFound):
        queues.retry("default", "nope")
    with pytest.raises(UnknownQueue, match=r"unknown queue 'defualt' \(did you mean 'default'\?\)"):
        queues.stats("defualt")


def test_delete_in_each_state_and_the_running_task_refusal(
    ops: Client, queues: Queues, namespace: str, redis_client: redis.Redis
) -> None:
    pending = ops.dispatch("t:record", key=f"{namespace}:p")
    scheduled = ops.dispatch("t:record", key=f"{namespace}:s", delay=3600)
    assert queues.delete("default", pending.id) == "pending"
    assert queues.delete("default", scheduled.id) == "scheduled"

    worker = start_worker(ops)
    try:
        retrying = ops.dispatch("t:fails_slowly", key=f"{namespace}:r")
        archived = ops.dispatch("t:flaky", key=f"{namespace}:x", failures=1)
        completed = ops.dispatch("t:record", key=f"{namespace}:c")
        running = ops.dispatch("t:slow", key=f"{namespace}:slow", seconds=3)
        wait_for(lambda: queues.task("default", retrying.id).state == "retry", what="retry")
        wait_for(lambda: queues.task("default", archived.id).state == "archived", what="archived")
        wait_for(lambda: queues.task("default", completed.id).state == "completed", what="completed")
        wait_for(lambda: queues.task("default", running.id).state == "active", what="active")

        with pytest.raises(TaskStateError, match="is active; a running task cannot be deleted"):
            queues.delete("default", running.id)
        for ref, state in [(retrying, "retry"), (archived, "archived"), (completed, "completed")]:
            assert queues.delete("default", ref.id) == state
            with pytest.raises(TaskNotFound):
                queues.task("default", ref.id)
    finally:
        worker.stop(timeout=20_000)
    stats = queues.stats("default")
    assert (stats.size, stats.archived, stats.completed) == (0, 0, 1)  # the slow task completed meanwhile


def test_retry_runs_archived_tasks_with_a_fresh_budget_and_scheduled_ones_now(
    ops: Client, queues: Queues, namespace: str, redis_client: redis.Redis
) -> None:
    worker = start_worker(ops)
    try:
        key = f"{namespace}:flaky"
        archived = ops.dispatch("t:flaky", key=key, failures=1)  # max_retries 0: archived after one failure
        wait_for(lambda: queues.task("default", archived.id).state == "archived", what="archived")
        info = queues.task("default", archived.id)
        assert info.last_error == "RuntimeError: flaky failure number b'1'"
        assert info.last_failed_at is not None

        assert queues.retry("default", archived.id) == "archived"
        wait_for(lambda: queues.task("default", archived.id).state == "completed", what="completed after retry")
        assert len(attempts(redis_client, key)) == 2

        later = ops.dispatch("t:record", key=f"{namespace}:later", delay=3600)
        assert queues.retry("default", later.id) == "scheduled"
        wait_for(lambda: attempts(redis_client, f"{namespace}:later"), what="the scheduled task to run now")
        with pytest.raises(TaskStateError, match="only scheduled, retry or archived tasks can run now"):
            queues.retry("default", later.id)  # completed by now
    finally:
        worker.stop(timeout=20_000)


def test_list_by_state_with_paging(ops: Client, queues: Queues, namespace: str) -> None:
    refs = [ops.dispatch("t:record", key=f"{namespace}:{i}") for i in range(7)]
    total, first = queues.tasks("default", "pending", page=1, size=3)
    _, third = queues.tasks("default", "pending", page=3, size=3)
    assert total == 7
    assert [t.id for t in first] == [r.id for r in refs[:3]]
    assert [t.id for t in third] == [refs[6].id]
    assert queues.tasks("default", "scheduled") == (0, [])
    with pytest.raises(TaskStateError, match="unknown state 'pendng'"):
        queues.tasks("default", "pendng")


def test_bulk_operations_return_counts(ops: Client, queues: Queues, namespace: str, redis_client: redis.Redis) -> None:
    for i in range(5):
        ops.dispatch("t:record", key=f"{namespace}:{i}")
    assert queues.archive_all_pending("default") == 5
    stats = queues.stats("default")
    assert (stats.pending, stats.archived) == (0, 5)

    assert queues.run_all("default", "archived") == 5
    stats = queues.stats("default")
    assert (stats.pending, stats.archived) == (5, 0)

    for _ in range(2):
        ops.dispatch("t:record", key=f"{namespace}:s", delay=3600)
    assert queues.run_all("default", "scheduled") == 2
    assert queues.stats("default").pending == 7

    assert queues.delete_all_pending("default") == 7
    assert queues.stats("default").size == 0
    assert redis_client.hlen(f"{namespace}:default.ids") == 0  # no index entry is left behind
    for i in range(3):
        ops.dispatch("t:record", key=f"{namespace}:{i}")
    queues.archive_all_pending("default")
    assert queues.delete_all_archived("default") == 3
    assert queues.stats("default").archived == 0
    assert redis_client.hlen(f"{namespace}:default.ids") == 0
