"""Retry policy, dead letters and timeouts, on a real Redis with a real Dramatiq worker."""

from __future__ import annotations

import dramatiq
import redis

from jobkit.engine.broker import JobkitBroker
from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support import attempts, wait_for

# TEST_JOBS: backoff between 100ms and 400ms, max_retries 3 unless the task says otherwise.
BACKOFF_MIN, BACKOFF_MAX = 0.100, 0.400
# Scheduling slack: a due retry is forwarded by the next fetch, and the poll sleeps at most 200ms.
SLACK = 0.35


def test_task_failing_twice_then_succeeding_runs_three_times_with_bounded_backoff(
    client: Client, worker: dramatiq.Worker, redis_client: redis.Redis, namespace: str, broker: JobkitBroker
) -> None:
    # Given a task that fails twice before it succeeds
    key = f"{namespace}:flaky"
    client.dispatch("test:flaky", key=key, failures=2)

    # When the worker has drained the queue
    wait_for(lambda: broker.do_qsize("default") == 0 and len(attempts(redis_client, key)) >= 3, what="3 attempts")

    # Then it ran exactly three times, each wait inside the backoff bounds
    times = attempts(redis_client, key)
    assert len(times) == 3
    first_wait, second_wait = times[1] - times[0], times[2] - times[1]
    assert BACKOFF_MIN <= first_wait <= 2 * BACKOFF_MIN + SLACK, first_wait
    assert 2 * BACKOFF_MIN <= second_wait <= BACKOFF_MAX + SLACK, second_wait
    assert broker.dead_letters("default") == []


def test_task_that_always_fails_is_archived_after_max_retries_plus_one_attempts_with_its_last_error(
    client: Client, worker: dramatiq.Worker, redis_client: redis.Redis, namespace: str, broker: JobkitBroker
) -> None:
    key = f"{namespace}:dead"
    ref = client.dispatch("test:always_fails", key=key)  # max_retries: 2

    dead = wait_for(lambda: broker.dead_letters("default"), what="the dead letter")

    assert len(attempts(redis_client, key)) == 3
    assert [m.message_id for m in dead] == [ref.id]
    assert dead[0].options["last_error"] == "ConnectionError: attempt 3 failed"
    assert dead[0].options["retries"] == 3  # Dramatiq's count: every failure, the final one too
    assert "attempt 3 failed" in dead[0].options["traceback"]
    assert broker.do_qsize("default") == 0
    info = Queues(client).task("default", ref.id)
    assert (info.state, info.retried, info.max_retries) == ("archived", 2, 2)  # the retries made


def test_skip_retry_archives_after_one_attempt(
    client: Client, worker: dramatiq.Worker, redis_client: redis.Redis, namespace: str, broker: JobkitBroker
) -> None:
    key = f"{namespace}:skip"
    client.dispatch("test:permanent", key=key)

    dead = wait_for(lambda: broker.dead_letters("default"), what="the dead letter")

    assert len(attempts(redis_client, key)) == 1
    assert dead[0].options["last_error"] == "SkipRetry: bad input, do not retry"


def test_exception_listed_in_skip_retry_on_archives_after_one_attempt(
    client: Client, worker: dramatiq.Worker, redis_client: redis.Redis, namespace: str, broker: JobkitBroker
) -> None:
    key = f"{namespace}:value"
    client.dispatch("test:bad_value", key=key)

    dead = wait_for(lambda: broker.dead_letters("default"), what="the dead letter")

    assert len(attempts(redis_client, key)) == 1
    assert dead[0].options["last_error"] == "ValueError: listed in skip_retry_on"


def test_task_over_its_timeout_is_interrupted_and_retried(
    client: Client, worker: dramatiq.Worker, redis_client: redis.Redis, namespace: str, broker: JobkitBroker
) -> None:
    # Given a task with timeout 1s and max_retries 1 that would run for 30s
    key = f"{namespace}:slow"
    client.dispatch("test:slow", key=key, seconds=30)

    # Then both attempts are interrupted and the task ends archived with a time-limit error
    dead = wait_for(lambda: broker.dead_letters("default"), timeout=15, what="the dead letter")

    assert len(attempts(redis_client, key)) == 2
    assert redis_client.get(f"{key}:done") is None
    assert dead[0].options["last_error"].startswith("TimeLimitExceeded")


def test_dispatch_options_override_the_task_policy(
    client: Client, worker: dramatiq.Worker, redis_client: redis.Redis, namespace: str, broker: JobkitBroker
) -> None:
    key = f"{namespace}:override"
    client.dispatch("test:always_fails", key=key, max_retries=0, queue="low")

    dead = wait_for(lambda: broker.dead_letters("low"), what="the dead letter on low")

    assert len(attempts(redis_client, key)) == 1
    assert dead[0].queue_name == "low"
