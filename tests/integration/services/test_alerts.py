"""Alert rules: fired once per incident (cool-down) to a real webhook on 127.0.0.1, from the archiving worker and
from the health check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dramatiq
import pytest
import redis

from jobkit.builtin.health import health_check
from jobkit.config.jobs_file import load_project
from jobkit.config.model import Project
from jobkit.errors import SkipRetry
from jobkit.services import health
from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support import wait_for
from tests.support.projects import OPS_JOBS
from tests.support.webhook import Receiver


@pytest.fixture
def project(write_yaml: Callable[..., Path], receiver: Receiver) -> Project:
    """Alert rules posting to the test's webhook receiver."""
    return load_project(write_yaml(OPS_JOBS.format(url=receiver.url)))


def archived(client: Client, queue: str) -> int:
    return Queues(client).stats(queue).archived


def notifications_done(client: Client) -> bool:
    stats = Queues(client).stats("critical")
    return stats.size == 0


def test_an_archived_task_alerts_once_per_cooldown(
    client: Client, worker: dramatiq.Worker, receiver: Receiver, redis_client: redis.Redis, namespace: str
) -> None:
    # Given a rule `dead-tasks` (queue default, cool-down 2s) posting to a webhook
    # When two tasks are archived one after the other
    client.dispatch("test:permanent", key=f"{namespace}:a")
    wait_for(lambda: archived(client, "default") == 1, what="first archived")
    client.dispatch("test:permanent", key=f"{namespace}:b")
    wait_for(lambda: archived(client, "default") == 2, what="second archived")

    # Then one alert is delivered, naming the task and its error
    wait_for(lambda: receiver.bodies, what="the webhook alert")
    wait_for(lambda: notifications_done(client), what="notifications delivered")
    assert receiver.rules() == ["dead-tasks"]
    assert b"test:permanent" in receiver.bodies[0] and b"bad input, do not retry" in receiver.bodies[0]

    # When the cool-down has passed and another task is archived, a second incident alerts again
    key = client.keys.alert_cooldown("dead-tasks")
    wait_for(lambda: not redis_client.exists(key), timeout=5, what="the cool-down to end")
    client.dispatch("test:permanent", key=f"{namespace}:c")
    wait_for(lambda: len(receiver.bodies) == 2, what="the second alert")


def test_a_task_archived_on_an_unwatched_queue_does_not_alert(
    client: Client, worker: dramatiq.Worker, receiver: Receiver, namespace: str
) -> None:
    # Given dead-tasks watches only `default`; When a task on `low` is archived after its retries
    client.dispatch("test:always_fails", key=f"{namespace}:x")
    wait_for(lambda: archived(client, "low") == 1, what="archived on low")
    client.dispatch("test:permanent", key=f"{namespace}:y")  # a marker behind it on the watched queue
    wait_for(lambda: receiver.bodies, what="the marker's alert")

    # Then only the watched queue's task alerted
    assert len(receiver.bodies) == 1 and b"test:permanent" in receiver.bodies[0]


def test_latency_over_the_threshold_alerts_once_and_is_in_the_health_result(
    client: Client, worker: dramatiq.Worker, receiver: Receiver
) -> None:
    # Given the queue `low` paused with a task waiting longer than the rule's 50ms
    queues = Queues(client)
    queues.pause("low")
    client.dispatch("test:noop")
    wait_for(lambda: queues.stats("low").latency_ms > 60, what="latency over 50ms")

    # When the health check runs twice
    first = health_check(client)
    second = health_check(client)

    # Then the first alerts, the second is within the cool-down; the slow queue is reported and stored
    assert first["alerts_fired"] == ["slow-low"] and second["alerts_fired"] == []
    assert [q["queue"] for q in first["slow_queues"]] == ["low"]
    assert first["slow_queues"][0]["threshold_ms"] == 50
    wait_for(lambda: receiver.bodies, what="the latency alert")
    wait_for(lambda: notifications_done(client), what="notifications delivered")
    assert receiver.rules() == ["slow-low"]
    assert health.latest(client) == second
    assert second["status"] == "degraded" and second["workers"] == 1 and second["redis"]["status"] == "ok"


def test_failure_rate_and_archived_growth_compare_with_the_previous_sample(
    client: Client, worker: dramatiq.Worker, receiver: Receiver, namespace: str
) -> None:
    # Given a first health check (the baseline sample)
    assert health_check(client)["alerts_fired"] == []

    # When 3 of 4 tasks on `default` then fail for good
    client.dispatch("test:record", key=f"{namespace}:ok")
    for n in range(3):
        client.dispatch("test:permanent", key=f"{namespace}:{n}")
    wait_for(lambda: archived(client, "default") == 3, what="three archived")
    wait_for(lambda: Queues(client).stats("default").processed_total == 4, what="four processed")

    # Then the next check fires the failure-rate (75% > 50%) and growth (3 > 2) rules
    assert sorted(health_check(client)["alerts_fired"]) == ["dead-growth", "failing"]
    wait_for(lambda: len(receiver.bodies) >= 3, what="the alerts")  # dead-tasks fired at the first archive too
    wait_for(lambda: notifications_done(client), what="notifications delivered")
    assert sorted(receiver.rules()) == ["dead-growth", "dead-tasks", "failing"]


def test_a_paused_queue_whose_backlog_grows_is_reported(client: Client) -> None:
    queues = Queues(client)
    queues.pause("low")
    assert health_check(client, latency_threshold="1h")["paused_queues_growing"] == []

    client.dispatch("test:noop")

    found = health_check(client, latency_threshold="1h")["paused_queues_growing"]
    assert found == [{"queue": "low", "size": 1, "previous_size": 0}]


def test_a_bad_threshold_is_permanent(client: Client) -> None:
    with pytest.raises(SkipRetry, match="latency_threshold"):
        health_check(client, latency_threshold="soon")
