"""A cron entry watched by three schedulers on one clock, one of which stops midway: every minute boundary is enqueued
exactly once, with no gap.

The end-to-end test (``test_scheduler_processes.py``) shows the same for an ``@every 1s`` entry with three real
``jobkit scheduler`` processes and a ``kill -9``; cron minutes would make it last over a minute, so they are shown
here, on a fake clock, through the same claim in the same Lua step."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime
from typing import cast

import redis
from dramatiq.message import Message

from jobkit.config.model import ScheduleSpec
from jobkit.scheduling.fire_loop import Scheduler
from jobkit.scheduling.store import ScheduleStore
from jobkit.services.client import Client
from tests.support import FakeClock

MINUTE_MS = 60_000


def fires(redis_client: redis.Redis, client: Client, entry: str) -> Counter[int]:
    counts: Counter[int] = Counter()
    for raw in cast(list[bytes], redis_client.hvals(client.keys.messages("low"))):
        message: Message[object] = Message.decode(raw)
        if message.options.get("schedule_id") == entry:
            counts[int(datetime.fromisoformat(message.options["scheduled_at"]).timestamp() * 1000)] += 1
    return counts


def test_every_minute_boundary_fires_once_while_one_of_three_schedulers_stops(
    client: Client, redis_client: redis.Redis
) -> None:
    # Given an every-minute cron entry stored a little after a minute boundary, and three schedulers on one clock
    t0 = (int(redis_client.time()[0]) * 1000 // MINUTE_MS) * MINUTE_MS + 1_000
    ScheduleStore(client.broker.lua).add(ScheduleSpec("minute", "test:noop", "* * * * *", source="yaml:minute"), t0)
    clock = FakeClock(t0 / 1000)
    schedulers = [Scheduler(client, clock=clock) for _ in range(3)]

    # When the clock runs five minutes in 250 ms steps (the schedulers' poll), the three ticking in a shuffled order
    # each step, and the first one stops (as if killed) after two and a half minutes
    order = random.Random(7)
    steps = 5 * MINUTE_MS // 250
    for step in range(steps):
        clock.now = (t0 + step * 250) / 1000
        alive = schedulers if step < steps // 2 else schedulers[1:]
        for scheduler in order.sample(alive, len(alive)):
            scheduler.tick()

    # Then each of the five minute boundaries was enqueued exactly once, before and after the stop
    boundary = t0 - 1_000
    minutes = fires(redis_client, client, "minute")
    assert sorted(minutes) == [boundary + n * MINUTE_MS for n in range(1, 6)]
    assert set(minutes.values()) == {1}
    # And the work was shared: more than one scheduler enqueued, and the stopped one nothing after it stopped
    assert sum(s.enqueued for s in schedulers) == len(minutes)
    assert sum(1 for s in schedulers if s.enqueued) >= 2
    assert schedulers[0].enqueued <= 2
