"""taskiq, as its docs set it up on Redis: taskiq-redis' RedisStreamBroker (XADD, XREADGROUP, XACK), no results.

``consumer_id="0"``: the consumer group starts at the beginning of the stream, so tasks sent before the first worker
starts (the drain) are delivered (as in the shared peer harness).
"""

from __future__ import annotations

import os

from taskiq_redis import RedisStreamBroker

from bench.peer_tasks import record

broker = RedisStreamBroker(url=os.environ["REDIS_URL"], queue_name="taskiqbench", consumer_id="0")


@broker.task(task_name="peer")
async def peer(t: float) -> None:
    record(t)
