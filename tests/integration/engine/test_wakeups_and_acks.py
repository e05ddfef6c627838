"""Idle consumers block on their queue's wake-up list; acks of one consumer go to Redis together, never early."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.broker import MessageProxy

from jobkit.engine import broker as broker_module
from jobkit.engine.broker import JobkitConsumer
from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support import wait_for
from tests.support.consumers import consumer_of, count_calls, fetch

JOBS = """
queues: {default: {weight: 1}}
tasks:
  t:noop: {handler: "tests.handlers:noop", queue: default}
"""


def _tokens(client: Client) -> int:
    return int(client.broker.client.llen(client.broker.keys.wakeup("default")))


def test_an_enqueue_onto_an_empty_queue_leaves_one_token_and_a_fetch_that_takes_all_drops_it(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(JOBS)
    for _ in range(5):
        client.dispatch("t:noop")
    assert _tokens(client) == 1  # only the first enqueue found the queue empty

    consumer = consumer_of(client.broker, prefetch=2)
    fetch(consumer, 2)
    assert _tokens(client) == 1  # work is left behind: another idle consumer may take it

    consumer.prefetch = 100
    fetch(consumer, 3)
    next(consumer)  # comes back empty
    assert _tokens(client) == 0


def test_a_delayed_task_and_a_resume_wake_idle_consumers_and_a_paused_fetch_drops_the_tokens(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(JOBS)
    queues = Queues(client)
    client.dispatch("t:noop", delay=timedelta(hours=1))
    assert _tokens(client) == 1  # a consumer waiting past its due time looks again

    queues.pause("default")
    consumer = consumer_of(client.broker)
    assert next(consumer) is None
    assert consumer.paused and _tokens(client) == 0  # else its consumers would wake again and again

    queues.resume("default")
    assert _tokens(client) == 1


def test_an_idle_worker_blocks_on_the_wakeup_list_and_an_enqueue_wakes_it(
    make_client: Callable[..., Client], redis_client: redis.Redis
) -> None:
    client = make_client(JOBS)
    worker = dramatiq.Worker(client.broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:

        def blocked() -> list[dict[str, str]]:
            return [c for c in redis_client.client_list() if c["cmd"] == "blpop" and "b" in c["flags"]]

        wait_for(blocked, what="a consumer blocked in BLPOP")
        client.dispatch("t:noop")
        wait_for(lambda: Queues(client).stats("default").processed_total == 1, what="the task done")
    finally:
        worker.stop(timeout=10_000)


def _acks_in_threads(consumer: JobkitConsumer, messages: list[MessageProxy]) -> list[threading.Thread]:
    threads = [threading.Thread(target=consumer.ack, args=(message,)) for message in messages]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(consumer._acks) == len(messages), what="the acks waiting")
    return threads


def _let_go(consumer: JobkitConsumer, threads: list[threading.Thread]) -> None:
    consumer._ack_call_over([], None)  # the call that was out is over (it carried none of these)
    for thread in threads:
        thread.join(10)


def test_an_ack_waiting_behind_one_in_flight_has_not_touched_redis_and_a_dead_worker_runs_it_again(
    make_client: Callable[..., Client],
) -> None:
    # Given a worker that ran a task and whose ack waits behind another ack call that is out
    crashed = make_client(JOBS, heartbeat_timeout=timedelta(milliseconds=300))
    crashed.dispatch("t:noop")
    consumer = consumer_of(crashed.broker)
    (message,) = fetch(consumer, 1)
    consumer._ack_sending = True
    waiting = _acks_in_threads(consumer, [message])
    queues = Queues(crashed)
    stats = queues.stats("default")
    assert (stats.processed_total, stats.completed, stats.size) == (0, 0, 1)

    # When that worker dies before the ack is sent, and another worker's maintenance finds it
    survivor = make_client(JOBS, heartbeat_timeout=timedelta(milliseconds=300))
    other = consumer_of(survivor.broker)

    def fetch_with_maintenance() -> MessageProxy | None:
        other.last_maintenance = -1e9  # orphan recovery rides along with this fetch
        return next(other)

    again = wait_for(fetch_with_maintenance, what="the dead worker's task handed back")

    # Then the task runs again, and is counted once, when that run is acked
    assert again.message_id == message.message_id
    other.ack(again)
    stats = queues.stats("default")
    assert (stats.processed_total, stats.completed, stats.size) == (1, 1, 0)
    _let_go(consumer, waiting)  # the late ack finds the rid no longer held: nothing changes
    assert queues.stats("default").processed_total == 1


def test_acks_that_wait_behind_a_call_go_in_one_call_and_count_each_task_once(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(JOBS)
    for _ in range(3):
        client.dispatch("t:noop")
    consumer = consumer_of(client.broker)
    messages = fetch(consumer, 3)
    calls = count_calls(consumer)
    consumer._ack_sending = True
    _let_go(consumer, _acks_in_threads(consumer, messages))

    assert calls == ["ack"] and consumer._acks == {} and consumer._ack_outcomes == {}
    stats = Queues(client).stats("default")
    assert (stats.processed_total, stats.completed, stats.size, stats.active) == (3, 3, 0, 0)
    assert client.broker.client.hlen(client.broker.keys.ids("default")) == 0


def test_eight_threads_acking_at_once_all_return_each_task_counted_once_and_fewer_calls_than_acks(
    make_client: Callable[..., Client],
) -> None:
    # Given 800 fetched tasks and eight threads that ack 100 each, as fast as they can
    client = make_client(JOBS)
    client.dispatch_many("t:noop", [{}] * 800)
    consumer = consumer_of(client.broker, prefetch=800)
    messages = fetch(consumer, 800)
    calls: list[int] = []
    real_call = consumer._call

    def counted(command: str, *args: Any, maintenance: bool = False) -> Any:
        calls.append(len(args))
        return real_call(command, *args, maintenance=maintenance)

    consumer._call = counted  # type: ignore[method-assign]
    failures: list[BaseException] = []

    def ack_all(mine: list[MessageProxy]) -> None:
        try:
            for message in mine:
                consumer.ack(message)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=ack_all, args=(messages[n::8],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # Then every thread returned, nothing is left waiting, and Redis counted each task once
    assert not failures and not any(thread.is_alive() for thread in threads)
    assert consumer._acks == {} and consumer._ack_outcomes == {} and consumer._ack_sending is False
    stats = Queues(client).stats("default")
    assert (stats.processed_total, stats.completed, stats.size, stats.active) == (800, 800, 0, 0)
    assert len(calls) < 800  # some calls carried more than one ack


def test_a_wake_up_and_the_fetch_after_it_are_one_round_trip(
    make_client: Callable[..., Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an idle consumer: its fetch found nothing and it blocks on the wake-up list (for up to 2 s here, so a busy
    # machine cannot time the wait out before the enqueue)
    monkeypatch.setattr(broker_module, "IDLE_WAIT_MAX_S", 2.0)
    client = make_client(JOBS)
    consumer = consumer_of(client.broker)
    calls = count_calls(consumer)
    got: list[MessageProxy | None] = []
    waiting = threading.Thread(target=lambda: got.append(next(consumer)))
    waiting.start()
    redis_client = client.broker.client

    def blocked() -> bool:
        return any(c["cmd"] == "blpop" and "b" in c["flags"] for c in redis_client.client_list())

    wait_for(blocked, what="the consumer blocked in BLPOP")

    # When a task is enqueued, the same call that woke it brings the task: no fetch of its own
    ref = client.dispatch("t:noop")
    waiting.join(10)
    assert calls == ["fetch"]  # the empty one before the wait
    assert len(got) == 1 and got[0] is not None and got[0].message_id == ref.id


def test_an_idle_consumer_makes_one_wait_and_one_fetch_per_idle_interval(
    make_client: Callable[..., Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an idle consumer with short waits and no maintenance pass due
    monkeypatch.setattr(broker_module, "IDLE_WAIT_MAX_S", 0.05)
    client = make_client(JOBS)
    client.broker.maintenance_interval = float("inf")
    consumer = consumer_of(client.broker)
    calls = count_calls(consumer)
    waits: list[float] = []
    real_wait = consumer._wait_then_fetch

    def counted_wait(wait: float) -> Any:
        waits.append(wait)
        return real_wait(wait)

    consumer._wait_then_fetch = counted_wait  # type: ignore[method-assign]

    # When it looks ten times and finds nothing
    assert [next(consumer) for _ in range(10)] == [None] * 10

    # Then each look was one wait with its pipelined fetch, and only the first look made a fetch of its own
    assert len(waits) == 10
    assert calls == ["fetch"]


def test_a_busy_consumer_refills_once_half_its_slots_are_free(make_client: Callable[..., Client]) -> None:
    client = make_client(JOBS)
    for _ in range(20):
        client.dispatch("t:noop")
    consumer = consumer_of(client.broker, prefetch=10)
    messages = fetch(consumer, 10)
    calls = count_calls(consumer)
    for message in messages[:4]:
        consumer.ack(message)
    assert next(consumer) is None  # 4 of 10 slots free: not worth a fetch yet
    assert "fetch" not in calls

    consumer.ack(messages[4])
    assert len(fetch(consumer, 5)) == 5  # half free: one fetch refills the five
    assert calls.count("fetch") == 1
    assert client.broker.client.llen(client.broker.keys.pending("default")) == 5  # 20 - 10 - 5 left in the queue


def test_once_its_queue_ran_dry_a_consumer_takes_each_new_task_at_its_free_slot(
    make_client: Callable[..., Client],
) -> None:
    client = make_client(JOBS)
    for _ in range(8):
        client.dispatch("t:noop")
    consumer = consumer_of(client.broker, prefetch=10)
    fetch(consumer, 8)  # asked for 10, got 8: the queue ran dry
    calls = count_calls(consumer)
    late = client.dispatch("t:noop")
    (message,) = fetch(consumer, 1)  # 2 of 10 slots free: taken at once, as Dramatiq would
    assert message.message_id == late.id
    assert calls.count("fetch") == 1
