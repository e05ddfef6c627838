"""Scheduler fire delay: 3 `jobkit scheduler` processes, 100 `@every 1s` entries; delay = enqueue time - nominal time.

The enqueue time is the message's timestamp, taken just before the claim-and-enqueue Lua call.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import redis
from dramatiq.message import Message

ROOT = Path(__file__).resolve().parent.parent
SCHEDULERS = 3
ENTRIES = 100
SECONDS = 20
NAMESPACE = "jksched"


def bench_scheduler(url: str) -> tuple[float, float, int, int]:
    """(p50 ms, p99 ms, fires, duplicates) over SECONDS of 3 schedulers firing 100 entries every second."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    directory = Path(tempfile.mkdtemp(prefix="jk-sched-bench-"))
    lines = [f"  e{i:03d}: {{cron: '@every 1s', task: bench:noop}}" for i in range(ENTRIES)]
    (directory / "schedules.yaml").write_text("schedules:\n" + "\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "JOBKIT_"))}
    env.update(
        REDIS_URL=url,
        PYTHONPATH=str(ROOT),
        JOBKIT_JOBS=str(ROOT / "bench" / "jobs.yaml"),
        JOBKIT_SCHEDULES=str(directory / "schedules.yaml"),
        JOBKIT_NAMESPACE=NAMESPACE,
        JOBKIT_SECRET="b" * 48,  # bench/jobs.yaml has a sensitive field
    )
    argv = [sys.executable, "-m", "jobkit.cli", "scheduler"]
    schedulers = [
        subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(SCHEDULERS)
    ]
    try:
        deadline = time.monotonic() + 60
        while client.hlen(f"{NAMESPACE}:default.msgs") < ENTRIES:  # all started and firing
            assert time.monotonic() < deadline and all(p.poll() is None for p in schedulers), "schedulers not firing"
            time.sleep(0.05)
        client.delete(f"{NAMESPACE}:default.msgs", f"{NAMESPACE}:default")
        time.sleep(SECONDS)  # a benchmark: let it run for a fixed time
    finally:
        for process in schedulers:
            process.send_signal(signal.SIGTERM)
        for process in schedulers:
            process.wait(30)
    delays: list[float] = []
    per_fire: dict[tuple[str, str], int] = {}
    for raw in client.hvals(f"{NAMESPACE}:default.msgs"):
        message = Message.decode(raw)
        nominal = datetime.fromisoformat(message.options["scheduled_at"]).timestamp() * 1000
        delays.append(message.message_timestamp - nominal)
        key = (message.options["schedule_id"], message.options["scheduled_at"])
        per_fire[key] = per_fire.get(key, 0) + 1
    duplicates = sum(count - 1 for count in per_fire.values())
    p99 = statistics.quantiles(delays, n=100)[98]
    return statistics.median(delays), p99, len(delays), duplicates


def main() -> int:
    from jobkit.store.embedded import EmbeddedRedis

    with EmbeddedRedis(Path(tempfile.mkdtemp(prefix="jk-bench-")), appendonly=False) as server:
        print(scheduler_line(os.environ.get("BENCH_REDIS_URL") or server.url))
    return 0


def scheduler_line(url: str) -> str:
    p50, p99, fires, duplicates = bench_scheduler(url)
    return (
        f"scheduler {SCHEDULERS} processes x {ENTRIES} entries @every 1s, {SECONDS}s: fire delay p50 {p50:.1f}ms "
        f"p99 {p99:.1f}ms over {fires} fires, {duplicates} duplicates"
    )


if __name__ == "__main__":
    sys.exit(main())
