"""Plain ``@dramatiq.actor`` code on jobkit's broker behaves as Dramatiq documents it (actor options, the Retries
middleware, callbacks, priorities, a stock producer's delayed messages), with a real ``dramatiq.Worker`` on a broker
from ``open_client`` against the real Redis.

What Dramatiq documents, and each test checks:

- ``throws``: "Actors that have their throws option set to an exception class or a tuple of exception classes will
  not be retried if one of those exceptions is raised within them" (``Retries``), logged at info.
- ``retry_when(retries, exception)`` "takes precedence over max_retries"; ``on_retry_exhausted`` names an actor that
  gets ``(message.asdict(), {"retries", "max_retries"})`` when the retries are spent.
- ``max_retries``, ``min_backoff``, ``max_backoff`` are actor options and message options (``send_with_options``);
  the defaults are 20 retries and 15 s to 7 days.
- Every failure that is not in ``throws`` increments ``options["retries"]`` (the last one too, which is how an
  ``on_failure`` callback tells the final failure), sets ``traceback`` and ``requeue_timestamp``.
- ``priority``: "lower numbers represent higher priorities"; of the messages a worker holds, the highest priority
  runs first.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

import dramatiq
import pytest
import redis
from dramatiq.message import Message
from dramatiq.middleware import AsyncIO
from dramatiq.results import Results

from jobkit.bootstrap import open_client
from jobkit.config.model import Project
from jobkit.config.settings import Settings
from jobkit.engine.broker import JobkitBroker
from jobkit.errors import SkipRetry
from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support import wait_for
from tests.support.projects import TEST_JOBS
from tests.support.stock import running_worker, stock_broker

# A due retry is forwarded by the next fetch; an idle consumer sleeps until the next due time (at most 200 ms).
SLACK = 0.35


class Runs:
    """What the actors of one test record, from the worker's threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[Any] = []

    def add(self, item: Any) -> int:
        with self.lock:
            self.items.append(item)
            return len(self.items)

    def __len__(self) -> int:
        with self.lock:
            return len(self.items)


def retry_message(redis_client: redis.Redis, namespace: str, queue: str = "default") -> Message[Any] | None:
    """The message waiting in the queue's retry set, as stored."""
    rids = cast(list[bytes], redis_client.zrange(f"{namespace}:{queue}.retry", 0, 0))
    if not rids:
        return None
    data = cast(bytes | None, redis_client.hget(f"{namespace}:{queue}.msgs", rids[0]))
    return Message.decode(data) if data else None


# -- 1. throws -------------------------------------------------------------------------------------------------------
def test_an_exception_listed_in_throws_aborts_the_message_after_one_run(
    broker: JobkitBroker, redis_client: redis.Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    runs = Runs()

    @dramatiq.actor(broker=broker, actor_name="compat_throws", throws=(LookupError,), max_retries=3, min_backoff=10)
    def lookup() -> None:
        runs.add(time.time())
        raise LookupError("no such row")

    with running_worker(broker):
        sent = lookup.send()
        dead = wait_for(lambda: broker.dead_letters("default"), what="the aborted message")

    assert len(runs) == 1
    assert [m.message_id for m in dead] == [sent.message_id]
    assert redis_client.zcard(f"{namespace}:default.retry") == 0
    assert dead[0].options.get("retries", 0) == 0  # Dramatiq counts no retry for an expected exception
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert f"Aborting message {sent.message_id!r}." in infos


def test_skip_retry_from_a_plain_actor_archives_it_after_one_run(broker: JobkitBroker) -> None:
    runs = Runs()

    @dramatiq.actor(broker=broker, actor_name="compat_skip")  # Dramatiq's defaults would retry it 20 times
    def refuses() -> None:
        runs.add(time.time())
        raise SkipRetry("bad input")

    with running_worker(broker):
        refuses.send()
        [dead] = wait_for(lambda: broker.dead_letters("default"), what="the dead letter")

    assert len(runs) == 1
    assert dead.options["last_error"] == "SkipRetry: bad input"


# -- 2. retry_when and on_retry_exhausted ----------------------------------------------------------------------------
def test_retry_when_decides_each_retry_and_on_retry_exhausted_gets_the_message(broker: JobkitBroker) -> None:
    asked: list[tuple[int, str]] = []
    runs, exhausted = Runs(), Runs()

    def retry_when(retries: int, exception: BaseException) -> bool:
        asked.append((retries, type(exception).__name__))
        return retries < 2

    @dramatiq.actor(broker=broker, actor_name="compat_exhausted")
    def on_exhausted(message_data: dict[str, Any], retry_info: dict[str, Any]) -> None:
        exhausted.add((message_data, retry_info))

    @dramatiq.actor(
        broker=broker, actor_name="compat_retry_when", retry_when=retry_when, on_retry_exhausted="compat_exhausted",
        min_backoff=10, max_backoff=20,
    )  # fmt: skip
    def unreachable() -> None:
        runs.add(time.time())
        raise ConnectionError("down")

    with running_worker(broker):
        sent = unreachable.send()
        wait_for(lambda: len(exhausted), what="the on_retry_exhausted message")
        wait_for(lambda: broker.dead_letters("default"), what="the dead letter")

    assert len(runs) == 3
    assert asked == [(0, "ConnectionError"), (1, "ConnectionError"), (2, "ConnectionError")]
    [(message_data, retry_info)] = exhausted.items
    assert message_data["message_id"] == sent.message_id
    assert message_data["actor_name"] == "compat_retry_when"
    assert retry_info == {"retries": 2, "max_retries": 20}  # retry_when took precedence over Dramatiq's default 20


def test_on_retry_exhausted_after_max_retries(broker: JobkitBroker) -> None:
    runs, exhausted = Runs(), Runs()

    @dramatiq.actor(broker=broker, actor_name="compat_exhausted_max")
    def on_exhausted(message_data: dict[str, Any], retry_info: dict[str, Any]) -> None:
        exhausted.add(retry_info)

    @dramatiq.actor(broker=broker, actor_name="compat_max", max_retries=1, min_backoff=10, max_backoff=20)
    def fails() -> None:
        runs.add(time.time())
        raise ConnectionError("down")

    with running_worker(broker):
        fails.send_with_options(on_retry_exhausted="compat_exhausted_max")  # a message option works as well
        wait_for(lambda: len(exhausted), what="the on_retry_exhausted message")

    assert len(runs) == 2
    assert exhausted.items == [{"retries": 1, "max_retries": 1}]


# -- 3. per-message and sub-second backoff ---------------------------------------------------------------------------
def test_send_with_options_backoff_is_honoured_and_may_be_under_a_second(broker: JobkitBroker) -> None:
    runs = Runs()

    @dramatiq.actor(broker=broker, actor_name="compat_backoff")  # Dramatiq's defaults: the first retry after 15 s
    def flaky() -> None:
        if runs.add(time.time()) <= 2:
            raise ConnectionError("not yet")

    with running_worker(broker):
        flaky.send_with_options(min_backoff=100, max_backoff=300)
        wait_for(lambda: len(runs) == 3, timeout=5, what="three runs")

    first, second, third = runs.items
    # Retry n waits min·2^(n-1) jittered up to twice that, never more than max_backoff.
    assert 0.100 <= second - first <= 0.200 + SLACK, second - first
    assert 0.200 <= third - second <= 0.300 + SLACK, third - second


def test_an_actor_max_backoff_under_a_second_caps_every_wait(broker: JobkitBroker) -> None:
    runs = Runs()

    @dramatiq.actor(broker=broker, actor_name="compat_fast_retries", max_backoff=150)
    def flaky() -> None:
        if runs.add(time.time()) <= 3:
            raise ConnectionError("not yet")

    with running_worker(broker):
        flaky.send()
        wait_for(lambda: len(runs) == 4, timeout=5, what="four runs")

    waits = [b - a for a, b in zip(runs.items, runs.items[1:], strict=False)]
    assert all(wait <= 0.150 + SLACK for wait in waits), waits


# -- 4. retries, traceback, requeue_timestamp ------------------------------------------------------------------------
def test_retries_counts_the_final_failure_too_so_on_failure_can_tell_it(
    broker: JobkitBroker, redis_client: redis.Redis, namespace: str
) -> None:
    failures = Runs()

    @dramatiq.actor(broker=broker, actor_name="compat_on_failure")
    def on_failure(message_data: dict[str, Any], exception_data: dict[str, Any]) -> None:
        failures.add(message_data["options"])

    @dramatiq.actor(
        broker=broker, actor_name="compat_counted", max_retries=1, min_backoff=1000, max_backoff=1000,
        on_failure="compat_on_failure",
    )  # fmt: skip
    def fails() -> None:
        raise ConnectionError("down")

    with running_worker(broker):
        before = int(time.time() * 1000)  # whole ms, as Dramatiq's requeue_timestamp (the run may take under 1 ms)
        fails.send()
        waiting = wait_for(lambda: retry_message(redis_client, namespace), what="the retry")
        after = time.time() * 1000
        wait_for(lambda: len(failures) == 2, timeout=5, what="two failure callbacks")

    # The retry carries what Dramatiq sets on it
    assert waiting.options["retries"] == 1
    assert before <= waiting.options["requeue_timestamp"] <= after
    assert "ConnectionError: down" in waiting.options["traceback"]
    # And the callback of the final failure sees retries > max_retries, the documented way to tell it
    assert [options["retries"] for options in failures.items] == [1, 2]
    last = [options for options in failures.items if options["retries"] > 1]
    assert len(last) == 1
    [dead] = broker.dead_letters("default")
    assert dead.options["retries"] == 2


# -- 5. priority -----------------------------------------------------------------------------------------------------
def test_actor_priority_orders_the_messages_a_worker_holds(broker: JobkitBroker) -> None:
    gate, started = threading.Event(), threading.Event()
    order = Runs()

    @dramatiq.actor(broker=broker, actor_name="compat_gate")
    def hold() -> None:
        started.set()
        gate.wait(10)

    @dramatiq.actor(broker=broker, actor_name="compat_low", priority=100)
    def low(n: int) -> None:
        order.add(("low", n))

    @dramatiq.actor(broker=broker, actor_name="compat_high", priority=0)
    def high(n: int) -> None:
        order.add(("high", n))

    work_queue = broker.work_queue
    assert work_queue is not None
    with running_worker(broker, threads=1, prefetch=50):
        hold.send()
        assert started.wait(5)
        for n in range(10):  # interleaved: low 0, high 0, low 1, high 1 ...
            low.send(n)
            high.send(n)
        wait_for(lambda: work_queue.buffered("default") == 20, what="all 20 held by the worker")
        gate.set()
        wait_for(lambda: len(order) == 20, what="20 runs")

    assert order.items == [("high", n) for n in range(10)] + [("low", n) for n in range(10)]


# -- 6. a plain actor gets Dramatiq's defaults ---------------------------------------------------------------------
def test_a_plain_actor_first_retry_waits_dramatiqs_15_seconds_or_more(
    broker: JobkitBroker, redis_client: redis.Redis, namespace: str
) -> None:
    runs = Runs()

    @dramatiq.actor(broker=broker, actor_name="compat_default_backoff")
    def fails() -> None:
        runs.add(time.time())
        raise ConnectionError("down")

    with running_worker(broker):
        fails.send()
        rid = wait_for(lambda: redis_client.zrange(f"{namespace}:default.retry", 0, 0, withscores=True))

    started_ms = runs.items[0] * 1000
    due_in = rid[0][1] - started_ms
    assert 15_000 <= due_in <= 30_000 + 1_000, due_in  # 15 s jittered up to twice that


def test_a_plain_actor_is_retried_dramatiqs_20_times(broker: JobkitBroker) -> None:
    runs = Runs()

    @dramatiq.actor(broker=broker, actor_name="compat_default_retries")
    def fails() -> None:
        runs.add(time.time())
        raise ConnectionError("down")

    with running_worker(broker):
        fails.send_with_options(min_backoff=1, max_backoff=5)
        [dead] = wait_for(lambda: broker.dead_letters("default"), timeout=20, what="the dead letter")

    assert len(runs) == 21
    assert dead.options["retries"] == 21


# -- 7. delayed messages from a stock producer -----------------------------------------------------------------------
def test_a_stock_producers_delayed_message_shows_in_stats_survives_a_restart_and_runs_on_time(
    client: Client, broker: JobkitBroker, redis_url: str, redis_client: redis.Redis, namespace: str
) -> None:
    runs = Runs()

    @dramatiq.actor(broker=broker, actor_name="compat_later")
    def later(n: int) -> None:
        runs.add(time.time())

    producer = stock_broker(redis_url, namespace)

    @dramatiq.actor(broker=producer, actor_name="compat_later")
    def later_stub(n: int) -> None:  # the producer's side of the same actor
        raise AssertionError("the producer never runs it")

    sent = later_stub.send_with_options(args=(1,), delay=2500)
    eta = sent.options["eta"]
    assert redis_client.llen(f"{namespace}:default.DQ") == 1  # where Dramatiq's own broker keeps it
    queues = Queues(client)
    assert queues.stats("default").scheduled == 1  # seen before any jobkit worker picked it up

    # A jobkit worker takes it over into Redis' scheduled set, then stops (a restart) before it is due
    with running_worker(broker):
        wait_for(lambda: redis_client.zcard(f"{namespace}:default.scheduled") == 1, what="forwarded")
    assert redis_client.llen(f"{namespace}:default.DQ") == 0
    assert redis_client.hlen(f"{namespace}:default.DQ.msgs") == 0
    stats = queues.stats("default")
    assert (stats.scheduled, stats.pending, stats.size) == (1, 0, 1)
    assert queues.task("default", sent.message_id).state == "scheduled"

    with running_worker(broker):
        wait_for(lambda: len(runs), timeout=10, what="the delayed run")
        wait_for(lambda: queues.stats("default").size == 0, what="the queue drained")

    ran_ms = runs.items[0] * 1000
    assert eta <= ran_ms <= eta + 1000, ran_ms - eta
    assert len(runs) == 1


# -- 8. middleware installed when an actor needs it ----------------------------------------------------------------
def test_results_and_asyncio_are_installed_only_once_an_actor_uses_them(
    settings: Settings, project: Project, redis_client: redis.Redis
) -> None:
    broker = open_client(settings, project).broker  # the test project: no async handler, no store_results

    def installed() -> set[type[dramatiq.Middleware]]:
        return {type(m) for m in broker.middleware}

    assert not installed() & {AsyncIO, Results}
    added = Runs()

    @dramatiq.actor(broker=broker, actor_name="compat_async")
    async def add(a: int, b: int) -> None:
        await asyncio.sleep(0)
        added.add(a + b)

    assert AsyncIO in {base for m in installed() for base in m.__mro__}
    assert Results not in installed()

    @dramatiq.actor(broker=broker, actor_name="compat_result", store_results=True)
    def multiply(a: int, b: int) -> int:
        return a * b

    [backend] = [m.backend for m in broker.middleware if isinstance(m, Results)]
    with running_worker(broker):
        add.send(1, 2)
        product = multiply.send(3, 4)
        assert product.get_result(backend=backend, block=True, timeout=5_000) == 12
        wait_for(lambda: len(added), what="the async actor's run")
    assert added.items == [3]


def test_what_a_dead_stock_dramatiq_worker_held_runs_on_jobkit_workers(
    make_client: Callable[..., Client], redis_url: str, redis_client: redis.Redis, namespace: str
) -> None:
    # Given jobkit workers whose orphan recovery runs on a short clock, beside a stock Dramatiq fleet
    broker = make_client(TEST_JOBS, heartbeat_timeout=timedelta(seconds=1)).broker
    runs = Runs()

    @dramatiq.actor(broker=broker, actor_name="compat_orphan")
    def orphan(n: int) -> None:
        runs.add(n)

    producer = stock_broker(redis_url, namespace)

    @dramatiq.actor(broker=producer, actor_name="compat_orphan")
    def orphan_stub(n: int) -> None:
        raise AssertionError("the producer never runs it")

    for n in range(3):
        orphan_stub.send(n)
    for n in range(3, 5):
        orphan_stub.send_with_options(args=(n,), delay=100)

    # When a stock worker fetches all five (three to run, two delayed) and dies holding them
    consumer, delay_consumer = producer.consume("default", prefetch=10), producer.consume("default.DQ", prefetch=10)
    held = [next(consumer) for _ in range(3)] + [next(delay_consumer) for _ in range(2)]
    assert all(message is not None for message in held)
    assert redis_client.llen(f"{namespace}:default") == 0 and redis_client.llen(f"{namespace}:default.DQ") == 0

    # Then once its heartbeat is older than the timeout, jobkit's workers run every one of them, once
    with running_worker(broker):
        wait_for(lambda: len(runs) == 5, timeout=15, what="five runs")
        wait_for(lambda: redis_client.hlen(f"{namespace}:default.msgs") == 0, what="all settled")
    assert sorted(runs.items) == [0, 1, 2, 3, 4]
    assert not redis_client.exists(f"{namespace}:default.DQ.msgs")
