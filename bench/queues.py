"""Queue-engine benchmarks: stats() on a million pending tasks, and work conservation under weighted priority."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
MILLION = 1_000_000
QUEUES = ("critical", "default", "low")

# Writes n pending messages straight into the broker's keys (what n dispatches would leave behind).
_FILL = """
local ns, queue, n, offset, data = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
for i = offset + 1, offset + n do
    local rid = "bench-" .. queue .. "-" .. i
    redis.call("hset", ns .. ":" .. queue .. ".msgs", rid, data)
    redis.call("hset", ns .. ":" .. queue .. ".ids", rid, rid)
    redis.call("rpush", ns .. ":" .. queue, rid)
end
return n
"""


def stats_timing(url: str) -> tuple[float, float, float]:
    """Queues.all_stats() over the 3 queues, on an empty namespace and on one with 1,000,000 pending tasks,
    sampled alternately (so both see the same machine): medians in ms, and the full one's p99."""
    from jobkit.bootstrap import open_client
    from jobkit.config.jobs_file import load_project
    from jobkit.config.settings import Settings
    from jobkit.services.queues import Queues

    project = load_project(ROOT / "jobs.yaml")
    connection = redis.Redis.from_url(url)
    connection.flushdb()
    empty = Queues(open_client(Settings(redis_url=url, namespace="qempty"), project))
    full_client = open_client(Settings(redis_url=url, namespace="qfull"), project)
    full = Queues(full_client)
    full_client.dispatch("email:send", to="a@b.co", subject="s", body="b")  # one real message, copied a million times
    data = connection.hget("qfull:default.msgs", connection.lindex("qfull:default", 0))
    connection.delete("qfull:default", "qfull:default.msgs", "qfull:default.ids")
    fill = connection.register_script(_FILL)
    per_queue = MILLION // len(QUEUES)
    for index, queue in enumerate(QUEUES):
        count = per_queue + (MILLION % len(QUEUES) if index == 0 else 0)
        for offset in range(0, count, 100_000):
            fill(keys=["qfull"], args=[queue, min(100_000, count - offset), offset, data])
    assert sum(s.pending for s in full.all_stats()) == MILLION
    empty_times, full_times = [], []
    for _ in range(500):
        for queues, times in ((empty, empty_times), (full, full_times)):
            start = time.perf_counter()
            queues.all_stats()
            times.append((time.perf_counter() - start) * 1000)
    connection.flushdb()
    full_times.sort()
    return statistics.median(empty_times), statistics.median(full_times), full_times[int(len(full_times) * 0.99)]


def work_conservation(url: str) -> tuple[float, float]:
    """Drain rate with only `low` filled under weights 6/3/1, against the same worker on a one-queue project."""
    from bench.__main__ import _drain_rate, _env
    from jobkit.bootstrap import open_client
    from jobkit.services.client import Client

    n = 10_000
    rates: dict[str, list[float]] = {"weighted": [], "single": []}
    yaml_files = {"weighted": ROOT / "bench" / "weighted.yaml", "single": ROOT / "bench" / "jobs.yaml"}
    for _ in range(5):  # rounds alternate the two workers; the median of five rides out a noisy machine
        for kind, path in yaml_files.items():
            env = _env(url, JOBKIT_NAMESPACE=f"wc{kind}")
            env["JOBKIT_JOBS"] = str(path)
            os.environ.update(env)
            client = open_client()
            queue = "low" if kind == "weighted" else "default"

            def fill(client: Client = client, queue: str = queue) -> None:
                for _ in range(n):
                    client.dispatch("bench:noop", queue=queue)

            argv = [sys.executable, "-m", "dramatiq", "jobkit.actors", "--processes", "1", "--threads", "8"]
            rate, _ = _drain_rate(url, argv, env, f"wc{kind}", fill, n, queue=queue, processes=1)
            rates[kind].append(rate)
    return statistics.median(rates["weighted"]), statistics.median(rates["single"])


def main(url: str | None = None) -> None:
    from jobkit.store.embedded import EmbeddedRedis

    server = None
    if url is None:
        server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="jk-qbench-")), appendonly=False).start()
        url = server.url
    try:
        empty, full, full_p99 = stats_timing(url)
        print(
            f"stats     3 queues  empty {empty:6.2f} ms   1,000,000 pending {full:6.2f} ms (p99 {full_p99:.2f})"
            f"   ratio {full / empty:.2f}"
        )
        weighted, single = work_conservation(url)
        print(
            f"priority  only `low` filled under 6/3/1 {weighted:8.0f}/s   one-queue worker {single:8.0f}/s"
            f"   ratio {weighted / single:.2f}   (1 process x 8 threads)"
        )
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
