"""Weighted and strict priority across queues, with a real worker on a real Redis."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import cast

import dramatiq
import redis
from dramatiq.message import Message

from jobkit.engine.broker import JobkitBroker
from jobkit.facade import set_client
from jobkit.services.client import Client
from tests.support import wait_for


def project_yaml(priority: str) -> str:
    return f"""
queues: {{critical: {{weight: 6}}, default: {{weight: 3}}, low: {{weight: 1}}}}
priority: {priority}
tasks:
  t:tag: {{handler: "tests.handlers:tag"}}
  t:probe: {{handler: "tests.handlers:probe"}}
"""


def prefill(broker: JobkitBroker, key: str, counts: dict[str, int], actor: str = "t:tag") -> None:
    """Enqueue many tasks, each tagged with its queue."""
    for queue, count in counts.items():
        for _ in range(count):
            kwargs = {"key": key, "tag": queue}
            if actor == "t:probe":
                kwargs["namespace"] = broker.namespace
            message: Message[None] = Message(queue_name=queue, actor_name=actor, args=(), kwargs=kwargs, options={})
            broker.enqueue(message)


def run_until(broker: JobkitBroker, redis_client: redis.Redis, key: str, count: int, threads: int = 8) -> list[str]:
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    try:
        wait_for(lambda: redis_client.llen(key) >= count, timeout=120, what=f"{count} tasks")
    finally:
        worker.stop(timeout=30_000)
    return [item.split()[0].decode() for item in cast(list[bytes], redis_client.lrange(key, 0, count - 1))]


def test_weighted_6_3_1_shares_over_the_first_3000_completions(
    make_client: Callable[[str], Client], redis_client: redis.Redis, namespace: str
) -> None:
    broker = make_client(project_yaml("weighted")).broker
    key = f"{namespace}:order"
    prefill(broker, key, {"critical": 3000, "default": 3000, "low": 3000})

    order = run_until(broker, redis_client, key, 3000)

    shares = {queue: count / 3000 for queue, count in Counter(order).items()}
    print(f"weighted shares over the first 3000: {shares}")
    assert abs(shares["critical"] - 0.60) <= 0.05
    assert abs(shares["default"] - 0.30) <= 0.05
    assert abs(shares.get("low", 0) - 0.10) <= 0.05


def test_strict_starts_no_default_task_while_critical_has_pending_tasks(
    make_client: Callable[[str], Client], redis_client: redis.Redis, namespace: str
) -> None:
    client = make_client(project_yaml("strict"))
    broker = client.broker
    set_client(client)
    key = f"{namespace}:order"
    prefill(broker, key, {"low": 300, "default": 300, "critical": 300}, actor="t:probe")

    try:
        run_until(broker, redis_client, key, 900)
    finally:
        set_client(None)

    starts = [item.decode().split() for item in cast(list[bytes], redis_client.lrange(key, 0, -1))]
    assert Counter(tag for tag, _, _ in starts) == {"critical": 300, "default": 300, "low": 300}
    # every default task started when no critical task waited; every low one when neither waited
    assert all(critical == "0" for tag, critical, _ in starts if tag != "critical")
    assert all(default == "0" for tag, _, default in starts if tag == "low")
    # and the first start of each queue comes in weight order
    first = [tag for tag, _, _ in starts]
    assert first.index("critical") < first.index("default") < first.index("low")
