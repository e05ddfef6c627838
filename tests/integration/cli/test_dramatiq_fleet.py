"""Moving a Dramatiq fleet onto jobkit, in subprocesses on the real Redis: stock ``RedisBroker`` producers beside
``dramatiq jobkit.actors`` workers."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import dramatiq
import pytest
import redis

from tests.support import ROOT, start, wait_for
from tests.support.stock import stock_broker

pytestmark = pytest.mark.slow


def dramatiq_argv(*flags: str) -> list[str]:
    return [sys.executable, "-m", "dramatiq", "jobkit.actors", *flags]


@pytest.mark.timeout(120)
def test_a_mixed_fleet_runs_200_stock_messages_once_each_and_the_delayed_ones_on_time(
    env: dict[str, str],
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    namespace: str,
    processes: list[subprocess.Popen[str]],
) -> None:
    # Given jobkit workers running the team's plain actors (no jobs.yaml task), on the producers' namespace
    (tmp_path / "jobs.yaml").write_text("queues: {default: {weight: 1}}\n")
    env = {**env, "JOBKIT_JOBS": str(tmp_path / "jobs.yaml")}
    log = tmp_path / "workers.log"
    argv = dramatiq_argv("tests.handlers.plain", "--processes", "2", "--threads", "4")
    workers = start(processes, argv, env, ROOT, log)
    wait_for(lambda: log.read_text().count("Worker process is ready") == 2, timeout=60, what="two workers")
    key = f"{namespace}:fleet"

    # When a stock Dramatiq producer sends 200 messages, 50 of them delayed 1-3 s
    producer = stock_broker(redis_url, namespace)

    @dramatiq.actor(broker=producer, actor_name="fleet_record", queue_name="default", max_retries=0)
    def fleet_record(key: str, n: int) -> None:
        raise AssertionError("the producer never runs it")

    rng = random.Random(16)
    delayed = set(rng.sample(range(200), 50))
    etas: dict[int, int] = {}
    for n in range(200):
        if n in delayed:
            etas[n] = fleet_record.send_with_options(args=(key, n), delay=rng.randint(1000, 3000)).options["eta"]
        else:
            fleet_record.send(key, n)

    # Then every message runs exactly once, and nothing is left anywhere
    wait_for(lambda: redis_client.llen(key) >= 200, timeout=30, what="200 runs")
    wait_for(
        lambda: (
            redis_client.hlen(f"{namespace}:default.msgs") == 0
            and redis_client.llen(f"{namespace}:default.DQ") == 0
            and redis_client.hlen(f"{namespace}:default.DQ.msgs") == 0
        ),
        what="the queue drained",
    )
    runs = [json.loads(item) for item in redis_client.lrange(key, 0, -1)]
    assert Counter(n for n, _ in runs) == Counter(range(200))
    # And each delayed one no earlier than asked, and within a second after
    late_ms = sorted(started * 1000 - etas[n] for n, started in runs if n in etas)
    print(f"delayed messages started {late_ms[0]:.0f} to {late_ms[-1]:.0f} ms after their eta (median "
          f"{late_ms[len(late_ms) // 2]:.0f} ms)")  # fmt: skip
    assert len(late_ms) == 50
    assert late_ms[0] >= 0 and late_ms[-1] <= 1000

    workers.send_signal(signal.SIGTERM)
    assert workers.wait(30) == 0
