"""Dispatching: delays, at=, and refusals at dispatch time."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import cast

import dramatiq
import pytest
import redis
from dramatiq.message import Message

import jobkit
from jobkit.engine.broker import JobkitBroker
from jobkit.engine.messages import Claim, Outgoing, Refused
from jobkit.errors import DispatchError, PayloadError, UnknownQueue, UnknownTask
from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support import attempts, wait_for


@pytest.mark.parametrize("delay", [0.5, 1.5])
def test_delayed_task_runs_no_earlier_than_asked_and_within_one_second_after(
    client: Client, worker: dramatiq.Worker, redis_client: redis.Redis, namespace: str, delay: float
) -> None:
    key = f"{namespace}:delayed"
    sent = time.time()
    client.dispatch("test:record", key=key, delay=timedelta(seconds=delay))

    ran = wait_for(lambda: attempts(redis_client, key), timeout=delay + 5)[0]

    assert sent + delay <= ran <= sent + delay + 1.0, ran - sent


def test_task_at_a_time_runs_no_earlier_than_that_time_and_within_one_second_after(
    client: Client, worker: dramatiq.Worker, redis_client: redis.Redis, namespace: str
) -> None:
    key = f"{namespace}:at"
    at = datetime.now(UTC) + timedelta(seconds=1.2)
    client.dispatch("test:record", key=key, at=at)

    ran = wait_for(lambda: attempts(redis_client, key), timeout=6)[0]

    assert at.timestamp() <= ran <= at.timestamp() + 1.0, ran - at.timestamp()


def test_delayed_task_waits_in_redis_not_in_worker_memory(
    client: Client, broker: JobkitBroker, redis_client: redis.Redis, namespace: str
) -> None:
    # A delay far beyond Dramatiq's 7-day limit is accepted and visible in the queue's scheduled set.
    ref = client.dispatch("test:record", key=f"{namespace}:far", delay=timedelta(days=30))

    scheduled = cast(
        list[tuple[bytes, float]], redis_client.zrange(f"{namespace}:default.scheduled", 0, -1, withscores=True)
    )
    assert len(scheduled) == 1
    due_ms = scheduled[0][1]
    assert abs(due_ms / 1000 - (time.time() + 30 * 86400)) < 5
    assert redis_client.llen(f"{namespace}:default") == 0
    assert ref.queue == "default" and ref.task == "test:record"


def test_dispatch_returns_a_task_ref_and_the_module_level_dispatch_uses_the_current_client(
    client: Client, worker: dramatiq.Worker, redis_client: redis.Redis, namespace: str
) -> None:
    key = f"{namespace}:module"
    ref = jobkit.dispatch("test:record", key=key, queue="critical")

    assert isinstance(ref, jobkit.TaskRef)
    assert (ref.queue, ref.task) == ("critical", "test:record")
    assert len(ref.id) == 36
    wait_for(lambda: attempts(redis_client, key))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda c: c.dispatch("test:recrod", key="k"),
            UnknownTask,
            "unknown task 'test:recrod' (did you mean 'test:record'?)",
        ),
        (
            lambda c: c.dispatch("test:record", key="k", queue="critcal"),
            UnknownQueue,
            "test:record: unknown queue 'critcal' (did you mean 'critical'?)",
        ),
        (
            lambda c: c.dispatch("test:greet"),
            PayloadError,
            "test:greet: missing payload field 'name' (required: name)",
        ),
        (
            lambda c: c.dispatch("test:greet", name="Ann", greting="hi"),
            PayloadError,
            "test:greet: unknown payload field 'greting' (did you mean 'greeting'?)",
        ),
        (
            lambda c: c.dispatch("test:greet", name="Ann", loud={1, 2}),
            PayloadError,
            "test:greet: payload field loud is a set, which is not JSON (send text, numbers, lists or mappings)",
        ),
        (
            lambda c: c.dispatch("test:greet", name={"when": datetime(2026, 1, 1)}),
            PayloadError,
            "test:greet: payload field name.when is a datetime, which is not JSON"
            " (send text, numbers, lists or mappings)",
        ),
        (
            lambda c: c.dispatch("test:greet", name="Ann", delay=5, at=datetime.now(UTC)),
            DispatchError,
            "test:greet: give delay or at, not both",
        ),
        (
            lambda c: c.dispatch("test:greet", name="Ann", max_retries=-1),
            DispatchError,
            "test:greet: max_retries must be a whole number >= 0, found -1",
        ),
    ],
)
def test_dispatch_refuses_what_the_task_cannot_take_and_enqueues_nothing(
    client: Client, broker: JobkitBroker, call: Callable[[Client], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        call(client)
    assert str(raised.value) == message
    assert all(broker.do_qsize(queue) == 0 for queue in ("critical", "default", "low"))


def test_a_claimed_send_enqueues_exactly_once_per_claim_key(broker: JobkitBroker, redis_client: redis.Redis) -> None:
    def send(key: str) -> Refused | None:
        message: Message[None] = Message(queue_name="default", actor_name="test:noop", args=(), kwargs={}, options={})
        claim = Claim(f"{broker.namespace}:claim:{key}", 60_000, "fire")
        return broker.send(Outgoing(message, claims=(claim,)))[1]

    first, second, other = send("a"), send("a"), send("b")

    assert first is None and other is None
    assert second is not None and second.claim.kind == "fire"
    assert broker.do_qsize("default") == 2


def test_the_apis_dispatch_with_payload_and_options_apart_reads_them_as_dispatch_async_does(
    client: Client, redis_client: redis.Redis, namespace: str
) -> None:
    import asyncio

    async def dispatches() -> tuple[list[str], DispatchError | None]:
        apart = await client.dispatch_parts_async("test:greet", {"name": "Ann"}, {"delay": 60}, "ann")
        merged = await client.dispatch_async("test:greet", triggered_by="ann", name="Ann", delay=60)
        # An option name in the payload is the option, as for dispatch(); given both ways, it is refused
        moved = await client.dispatch_parts_async("test:greet", {"name": "Bo", "delay": 60}, {})
        try:
            await client.dispatch_parts_async("test:greet", {"name": "Cy", "delay": 5}, {"delay": 60})
        except DispatchError as exc:
            return [apart.id, merged.id, moved.id], exc
        return [apart.id, merged.id, moved.id], None

    ids, refused = asyncio.run(dispatches())
    assert redis_client.zcard(f"{namespace}:default.scheduled") == 3  # all delayed: the same option each way
    assert [Queues(client).task("default", task_id).triggered_by for task_id in ids[:2]] == ["ann", "ann"]
    assert refused is not None and "'delay' is given twice" in str(refused)
