"""`dispatch_many`: every payload checked first (all or nothing), then pipelined batches through the one builder."""

from __future__ import annotations

import dramatiq
import pytest
import redis

from jobkit.engine.broker import SEND_MANY_BATCH, JobkitBroker
from jobkit.errors import DuplicateTask, PayloadError, UnknownTask
from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support import uses_project, wait_for
from tests.support.projects import LIFECYCLE_JOBS

project = uses_project(LIFECYCLE_JOBS)


def test_ten_thousand_payloads_all_run_exactly_once(
    client: Client, worker: dramatiq.Worker, redis_client: redis.Redis, namespace: str, broker: JobkitBroker
) -> None:
    key = f"{namespace}:many"
    count = 10_000
    assert count > 8 * SEND_MANY_BATCH  # several script calls, and more than one round trip

    refs = client.dispatch_many("life:work", [{"key": key, "n": n} for n in range(count)])

    assert len(refs) == count and len({ref.id for ref in refs}) == count
    assert {ref.queue for ref in refs} == {"default"}
    wait_for(lambda: redis_client.hlen(f"{key}:runs") == count, timeout=60, what="every task to run")
    runs = {int(n): int(times) for n, times in redis_client.hgetall(f"{key}:runs").items()}
    assert runs == dict.fromkeys(range(count), 1)
    wait_for(lambda: Queues(client).stats("default").size == 0, what="the queue to drain")
    assert Queues(client).stats("default").processed == count


def test_one_bad_payload_enqueues_nothing_and_the_error_names_its_index(client: Client) -> None:
    payloads: list[dict[str, object]] = [{"key": "k", "n": n} for n in range(500)]
    payloads[317] = {"key": "k", "n": 1, "oops": True}

    with pytest.raises(PayloadError, match=r"^payload 317: life:work: .*oops"):
        client.dispatch_many("life:work", payloads)
    with pytest.raises(PayloadError, match="payload 2 is list"):
        client.dispatch_many("life:work", [{"key": "k", "n": 1}, {"key": "k", "n": 2}, [1, 2]])  # type: ignore[list-item]
    with pytest.raises(UnknownTask):
        client.dispatch_many("life:nope", [{}])

    assert Queues(client).stats("default").size == 0


def test_unique_holds_per_payload_in_a_batch(client: Client) -> None:
    with pytest.raises(DuplicateTask, match="1 of 3 not enqueued") as caught:
        client.dispatch_many("life:unique", [{"key": "k", "n": 1}, {"key": "k", "n": 2}, {"key": "k", "n": 1}])

    refs = caught.value.refs
    assert refs[0] is not None and refs[1] is not None and refs[2] is None
    assert Queues(client).stats("default").pending == 2
    assert f"held by {refs[0].id}" in str(caught.value)
