"""A consumer's heartbeat rides along with one of its calls a second; a worker taken for dead is whole again with its
next call."""

from __future__ import annotations

import time
from collections.abc import Callable

from jobkit.engine.broker import JobkitConsumer
from jobkit.services.client import Client
from tests.support.consumers import consumer_of, fetch

JOBS = """
queues: {default: {weight: 1}}
tasks:
  t:noop: {handler: "tests.handlers:noop", queue: default}
"""


def _stall(client: Client, consumer: JobkitConsumer) -> None:
    """As if the consumer's worker had not been heard of for 20 s (by Redis and by its own clock)."""
    broker = client.broker
    broker.client.zadd(broker.keys.heartbeats, {broker.broker_id: int(time.time() * 1000) - 20_000})
    consumer._beat_at -= 20


def test_a_worker_taken_for_dead_beats_again_and_what_it_fetches_after_is_recovered_too(
    make_client: Callable[..., Client],
) -> None:
    # Given a worker holding two tasks (room for four), and another worker that runs the maintenance pass
    client, rescuer = make_client(JOBS), make_client(JOBS)
    r, keys, worker_id = client.broker.client, client.broker.keys, client.broker.broker_id
    client.dispatch_many("t:noop", [{}] * 2)
    stalled = consumer_of(client.broker, prefetch=4)
    fetch(stalled, 2)
    assert r.sismember(keys.worker_acks(worker_id), "default")
    beat = r.zscore(keys.heartbeats, worker_id)

    # Calls within the beat interval carry no heartbeat
    stalled.requeue([])  # no call at all for nothing to requeue
    stalled._call("heartbeat")
    assert r.zscore(keys.heartbeats, worker_id) == beat

    # When it stalls past the timeout, the other worker hands its tasks back and forgets it
    _stall(client, stalled)
    rescuer.broker._call("heartbeat", "default", [], maintenance=True)
    assert r.llen(keys.pending("default")) == 2
    assert not r.exists(keys.worker_acks(worker_id)) and r.zscore(keys.heartbeats, worker_id) is None

    # Then its next call beats again and puts the queue back in its index, so what it fetches then is recoverable
    fetch(stalled, 2)  # the same two, handed back
    assert r.zscore(keys.heartbeats, worker_id) is not None
    assert r.sismember(keys.worker_acks(worker_id), "default")
    _stall(client, stalled)
    rescuer.broker._call("heartbeat", "default", [], maintenance=True)
    assert r.llen(keys.pending("default")) == 2


def test_a_fetch_after_the_worker_released_itself_puts_it_back_where_recovery_looks(
    make_client: Callable[..., Client],
) -> None:
    # Given a worker that released everything (its exit finalizer) while a consumer thread still fetches
    client = make_client(JOBS)
    r, keys, worker_id = client.broker.client, client.broker.keys, client.broker.broker_id
    client.dispatch_many("t:noop", [{}] * 2)
    consumer = consumer_of(client.broker, prefetch=4)
    fetch(consumer, 2)
    assert client.broker.release() == 2
    assert r.zscore(keys.heartbeats, worker_id) is None and not r.exists(keys.worker_acks(worker_id))

    # When that consumer fetches again within its beat interval (a call without the heartbeat)
    consumer.message_cache.clear()
    consumer.queued_message_ids.clear()
    fetch(consumer, 2)

    # Then the worker is back in the heartbeats and its index, so the rids it now holds are recovered once it is gone
    assert r.zscore(keys.heartbeats, worker_id) is not None
    assert r.sismember(keys.worker_acks(worker_id), "default")
    _stall(client, consumer)
    make_client(JOBS).broker._call("heartbeat", "default", [], maintenance=True)
    assert r.llen(keys.pending("default")) == 2
