"""Raw Dramatiq, as its docs set it up: the stock RedisBroker and one no-op actor (the benchmark's baseline)."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.peer_tasks import record

broker = RedisBroker(url=os.environ["REDIS_URL"], namespace=os.environ.get("RAW_NAMESPACE", "rawbench"))
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="bench:noop", queue_name="default", max_retries=0)
def noop() -> None:
    return None


@dramatiq.actor(actor_name="bench:peer", queue_name="default", max_retries=0)
def peer(t: float) -> None:
    record(t)
