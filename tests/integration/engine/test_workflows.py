"""Workflows: a 3-step chain with a 2-task group in the middle, on a real Redis with a real Dramatiq worker."""

from __future__ import annotations

from typing import Any, cast

import dramatiq
import redis

import jobkit
from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support import uses_project, wait_for
from tests.support.projects import FLOW_JOBS

project = uses_project(FLOW_JOBS)


def order(redis_client: redis.Redis, key: str) -> list[str]:
    return [item.decode() for item in cast(list[bytes], redis_client.lrange(f"{key}:order", 0, -1))]


def test_a_chain_with_a_group_in_the_middle_completes_in_order_with_results_passed_along(
    client: Client, worker: dramatiq.Worker, redis_client: redis.Redis, namespace: str
) -> None:
    # Given the flow:report workflow (fetch -> [double, square] -> total), dispatched by name like a task
    key = f"{namespace}:chain"
    ref = client.dispatch("flow:report", key=key, n=3)
    queues = Queues(client)

    # When the worker has run it
    info: dict[str, Any] = wait_for(
        lambda: (found := queues.workflow(ref.id))["status"] == "completed" and found, what="the workflow to complete"
    )

    # Then each step ran after the previous one, the group's results were collected in order, and 6 + 9 = 15
    steps = order(redis_client, key)
    assert steps[0] == "fetch" and sorted(steps[1:3]) == ["double", "square"] and steps[3] == "total"
    assert info["result"] == 15
    assert [s["state"] for s in info["steps"]] == ["completed", "completed", "completed"]
    assert [t["result"] for t in info["steps"][1]["tasks"]] == [6, 9]
    assert info["steps"][1]["group"] is True and info["failed_step"] is None


def test_a_failing_step_is_archived_stops_the_chain_and_retrying_it_finishes_the_chain(
    client: Client, worker: dramatiq.Worker, redis_client: redis.Redis, namespace: str
) -> None:
    # Given step 2's double task raises SkipRetry
    key = f"{namespace}:fail"
    redis_client.set(f"{key}:fail", 1)
    ref = client.dispatch("flow:report", key=key, n=4)
    queues = Queues(client)

    # When it has been archived
    info: dict[str, Any] = wait_for(lambda: (found := queues.workflow(ref.id))["status"] == "failed" and found)
    wait_for(lambda: queues.workflow(ref.id)["steps"][1]["tasks"][1]["state"] == "completed", what="square done")

    # Then the workflow says step 2 (index 1) failed, with the task and its error, and step 3 never ran
    assert info["failed_step"] == 1
    assert info["error"] == "SkipRetry: double was told to fail"
    failed = info["failed_task"]
    # (the run is marked failed as the attempt ends; the archive itself follows in the same worker thread)
    wait_for(lambda: queues.task(failed["queue"], failed["id"]).state == "archived", what="the archived step")
    assert "total" not in order(redis_client, key)
    assert queues.workflow(ref.id)["steps"][2]["state"] == "waiting"

    # When the cause is fixed and the archived task is retried
    redis_client.delete(f"{key}:fail")
    queues.retry(failed["queue"], failed["id"])

    # Then the chain resumes and finishes: 8 + 16 = 24
    done: dict[str, Any] = wait_for(lambda: (found := queues.workflow(ref.id))["status"] == "completed" and found)
    assert done["result"] == 24 and done["failed_step"] is None
    assert order(redis_client, key).count("total") == 1


def test_chain_and_group_in_python(client: Client, worker: dramatiq.Worker, namespace: str) -> None:
    key = f"{namespace}:py"
    flow = jobkit.chain(
        ("flow:fetch", {"key": key, "n": "{{ input.n }}"}),
        jobkit.group(("flow:double", {"key": key, "value": "{{ prev }}"}), ("flow:square", {"key": key, "value": 5})),
        ("flow:total", {"key": key, "values": "{{ prev }}"}),
    )

    ref = flow.dispatch(n=2)

    queues = Queues(client)
    info: dict[str, Any] = wait_for(lambda: (found := queues.workflow(ref.id))["status"] == "completed" and found)
    assert info["result"] == 4 + 25
    assert ref.task == "chain" and ref.queue == "default"


def test_a_workflow_payload_that_does_not_fit_its_first_task_is_refused(client: Client) -> None:
    try:
        client.dispatch("flow:report", key="k")
    except jobkit.DispatchError as exc:
        assert "input.n" in str(exc)
    else:
        raise AssertionError("expected a DispatchError")


def test_a_sibling_starting_after_a_member_failed_keeps_the_run_failed(
    client: Client, redis_client: redis.Redis, namespace: str
) -> None:
    # Given one worker thread, so step 2's members run one after the other: double fails first, then square starts
    key = f"{namespace}:order"
    redis_client.set(f"{key}:fail", 1)
    worker = dramatiq.Worker(client.broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        ref = client.dispatch("flow:report", key=key, n=2)
        queues = Queues(client)
        wait_for(lambda: queues.workflow(ref.id)["steps"][1]["tasks"][1]["state"] == "completed", what="square done")

        # Then the run still says step 2 failed: square starting did not wipe out double's failure
        info = queues.workflow(ref.id)
        assert (info["status"], info["failed_step"]) == ("failed", 1)
        assert info["error"] == "SkipRetry: double was told to fail"
    finally:
        worker.stop(timeout=10_000)
