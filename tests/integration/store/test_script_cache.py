"""Pipelined script calls (the API's batched dispatch, dispatch_many, stats of several queues) run as EVALSHA: no
SCRIPT EXISTS round trip before each pipeline, and a Redis that lost its script cache (a restart, SCRIPT FLUSH) is
given the script again with nothing lost or run twice."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis

from jobkit.services.client import Client
from jobkit.services.queues import Queues


def _script_calls(redis_client: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = redis_client.info("commandstats")
    return {name: int(stats[name]["calls"]) for name in stats if name.startswith(("cmdstat_script", "cmdstat_eval"))}


def _script_commands(calls: dict[str, int]) -> int:
    """SCRIPT subcommands run (Redis 7 counts them as ``cmdstat_script|load``…, older ones as ``cmdstat_script``)."""
    return sum(count for name, count in calls.items() if name.startswith("cmdstat_script"))


def test_batched_dispatch_sends_evalsha_only_and_survives_a_script_flush(
    client: Client, redis_client: redis.Redis
) -> None:
    queues = Queues(client)

    async def bursts() -> list[str]:
        first = await asyncio.gather(*(client.dispatch_async("test:greet", name=f"a{n}") for n in range(20)))
        redis_client.config_resetstat()
        second = await asyncio.gather(*(client.dispatch_async("test:greet", name=f"b{n}") for n in range(20)))
        calls = _script_calls(redis_client)
        # 20 EVALSHA and no SCRIPT command (redis-py's Script in a pipeline sends SCRIPT EXISTS before each batch)
        assert calls.get("cmdstat_evalsha", 0) == 20 and not _script_commands(calls), calls
        redis_client.script_flush()  # what a restarted Redis has: no scripts
        third = await asyncio.gather(*(client.dispatch_async("test:greet", name=f"c{n}") for n in range(20)))
        return [ref.id for ref in (*first, *second, *third)]

    # In a thread of its own: a test before this one may have left an event loop running in this thread.
    with ThreadPoolExecutor(1) as pool:
        ids = pool.submit(asyncio.run, bursts()).result()

    assert len(set(ids)) == 60
    assert queues.stats("default").pending == 60


def test_dispatch_many_and_stats_survive_a_script_flush(client: Client, redis_client: redis.Redis) -> None:
    queues = Queues(client)
    client.dispatch_many("test:greet", [{"name": f"a{n}"} for n in range(300)])
    redis_client.script_flush()
    client.dispatch_many("test:greet", [{"name": f"b{n}"} for n in range(300)])
    redis_client.script_flush()

    redis_client.config_resetstat()
    stats = {s.queue: s for s in queues.all_stats()}
    calls = _script_calls(redis_client)

    assert stats["default"].pending == 600
    assert _script_commands(calls) == 1, calls  # the one SCRIPT LOAD the flushed cache needs, no SCRIPT EXISTS
