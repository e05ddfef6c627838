"""Archive one task, and run / delete / archive a selection or a whole state in one call."""

from __future__ import annotations

from collections.abc import Callable

import dramatiq
import pytest

from jobkit.errors import DuplicateTask, InvalidRequest, TaskNotFound, TaskStateError
from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support import wait_for
from tests.support.filling import fill_tasks

BULK_JOBS = """
queues: {default: {weight: 1}}
defaults: {retention: 1h}
tasks:
  b:mail: {handler: "tests.handlers:accept"}
  b:once: {handler: "tests.handlers:accept", unique: 1h}
  b:slow: {handler: "tests.handlers:slow", timeout: 1m}
"""


@pytest.fixture
def app_client(make_client: Callable[[str], Client]) -> Client:
    return make_client(BULK_JOBS)


@pytest.fixture
def queues(app_client: Client) -> Queues:
    return Queues(app_client)


def test_archive_one_pending_scheduled_or_retry_task_and_run_it_again(app_client: Client, queues: Queues) -> None:
    pending = app_client.dispatch("b:mail", n=1)
    scheduled = app_client.dispatch("b:mail", n=2, delay=3600)
    fill_tasks(app_client, 10, [("b:mail", {"subject": "x"})])
    retry_id = queues.tasks("default", "retry")[1][0].id

    assert queues.archive("default", pending.id) == "pending"
    assert queues.archive("default", scheduled.id) == "scheduled"
    assert queues.archive("default", retry_id) == "retry"

    for task_id in (pending.id, scheduled.id, retry_id):
        assert queues.task("default", task_id).state == "archived"
    assert queues.tasks("default", "pending")[0] == 4  # the four filled ones left
    assert queues.retry("default", pending.id) == "archived"
    assert queues.task("default", pending.id).state == "pending"


def test_archive_refuses_what_it_cannot_archive_saying_why(app_client: Client, queues: Queues) -> None:
    ref = app_client.dispatch("b:mail", n=1)
    queues.archive("default", ref.id)
    with pytest.raises(TaskStateError, match=f"task '{ref.id}' is archived; only pending, scheduled or retry"):
        queues.archive("default", ref.id)
    with pytest.raises(TaskNotFound, match="no task 'nope' in queue 'default'"):
        queues.archive("default", "nope")


def test_archive_refuses_a_running_task(app_client: Client, queues: Queues, namespace: str) -> None:
    ref = app_client.dispatch("b:slow", key=f"{namespace}:slow", seconds=2)
    worker = dramatiq.Worker(app_client.broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        wait_for(lambda: queues.task("default", ref.id).state == "active", what="the slow task to start")
        with pytest.raises(
            TaskStateError,
            match="is active; only pending, scheduled or retry tasks can be archived \\(cancel a running one\\)",
        ):
            queues.archive("default", ref.id)
    finally:
        worker.stop(timeout=10_000)


def test_archiving_a_unique_task_frees_its_lock(app_client: Client, queues: Queues) -> None:
    ref = app_client.dispatch("b:once", user=7)
    with pytest.raises(DuplicateTask):
        app_client.dispatch("b:once", user=7)
    queues.archive("default", ref.id)
    assert app_client.dispatch("b:once", user=7).id != ref.id


def test_a_selection_is_changed_in_one_call_and_each_refusal_names_its_task(app_client: Client, queues: Queues) -> None:
    scheduled = [app_client.dispatch("b:mail", n=n, delay=3600).id for n in range(5)]
    pending = app_client.dispatch("b:mail", n=9).id

    ran = queues.bulk("default", "run", [*scheduled[:3], pending, "nope"])
    assert (ran.done, [(f.task_id, f.detail) for f in ran.failed]) == (
        3,
        [
            (pending, f"task {pending!r} is pending; only scheduled, retry or archived tasks can run now"),
            ("nope", "no task 'nope' in queue 'default'"),
        ],
    )
    assert queues.stats("default").pending == 4

    archived = queues.bulk("default", "archive", scheduled)  # three pending now, two still scheduled
    assert archived.done == 5 and queues.stats("default").archived == 5
    again = queues.bulk("default", "archive", scheduled[:2])
    assert again.done == 0 and [f.detail for f in again.failed] == [
        f"task {task_id!r} is archived; only pending, scheduled or retry tasks can be archived"
        for task_id in scheduled[:2]
    ]

    retried = queues.bulk("default", "retry", scheduled)  # "retry" is "run"
    assert retried.done == 5 and queues.stats("default").archived == 0

    deleted = queues.bulk("default", "delete", [*scheduled, pending, pending])  # a repeated id counts once
    assert deleted.done == 6 and deleted.failed == []
    assert queues.stats("default").size == 0


def test_five_hundred_archived_tasks_run_again_in_one_call(app_client: Client, queues: Queues) -> None:
    refs = [app_client.dispatch("b:mail", n=n, delay=3600) for n in range(500)]
    assert queues.bulk_state("default", "archive", "scheduled").done == 500
    assert queues.stats("default").archived == 500

    outcome = queues.bulk("default", "run", [r.id for r in refs])

    assert outcome.done == 500 and outcome.failed == []
    stats = queues.stats("default")
    assert (stats.archived, stats.pending) == (0, 500)
    assert queues.task("default", refs[0].id).retried == 0


def test_whole_states_go_in_one_call_however_large(app_client: Client, queues: Queues) -> None:
    # 3,000 stored tasks: the scheduled, retry and completed ones are more than one Lua step's batch of 1,000
    fill_tasks(app_client, 6000, [("b:mail", {"subject": "x"})])
    before = queues.stats("default")
    assert before.scheduled > 1000 and before.completed > 1000

    assert queues.bulk_state("default", "archive", "scheduled").done == before.scheduled
    assert queues.bulk_state("default", "delete", "completed").done == before.completed
    assert queues.bulk_state("default", "run", "retry").done == before.retry
    assert queues.bulk_state("default", "archive", "pending").done == before.pending + before.retry
    after = queues.stats("default")
    assert (after.pending, after.scheduled, after.retry, after.completed) == (0, 0, 0, 0)
    assert after.archived == before.archived + before.scheduled + before.pending + before.retry
    assert queues.bulk_state("default", "run", "archived").done == after.archived
    assert queues.bulk_state("default", "delete", "pending").done == after.archived
    assert queues.stats("default").size == 0


def test_bulk_refuses_an_action_or_state_it_cannot_do(queues: Queues) -> None:
    with pytest.raises(InvalidRequest, match=r"action: unknown action 'archve' \(did you mean 'archive'\?\)"):
        queues.bulk("default", "archve", [])
    with pytest.raises(TaskStateError, match="state: active tasks cannot be deleted"):
        queues.bulk_state("default", "delete", "active")
    with pytest.raises(TaskStateError, match="state: completed tasks cannot be archived"):
        queues.bulk_state("default", "archive", "completed")
    with pytest.raises(TaskStateError, match="state: pending tasks cannot run now"):
        queues.bulk_state("default", "run", "pending")
    with pytest.raises(InvalidRequest, match="ids: at most 10000 task ids per request, found 10001"):
        queues.bulk("default", "delete", [str(n) for n in range(10_001)])
    assert queues.bulk("default", "delete", []).done == 0
