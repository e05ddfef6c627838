"""`make bench`: jobkit against raw Dramatiq on the same Redis, side by side in one run, reported as ratios.

Absolute rates on a shared 2-core machine are noisy; the ratios of rounds run back to back are what to read.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 3
DISPATCH_N = 5_000
WORKER_N = 10_000
PROCESSES, THREADS = 2, 8


def _env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "JOBKIT_"))}
    env.update(REDIS_URL=url, PYTHONPATH=str(ROOT), JOBKIT_JOBS=str(ROOT / "bench" / "jobs.yaml"), **extra)
    return env


def bench_dispatch(url: str) -> tuple[float, float]:
    """Messages per second: jobkit.dispatch (validated) against actor.send on the stock broker."""
    os.environ.update(_env(url, JOBKIT_NAMESPACE="jkbench", RAW_NAMESPACE="rawbench"))
    from dramatiq.actor import Actor

    from bench import raw_app
    from jobkit.bootstrap import open_client

    jobkit_client = open_client()
    raw_actor: Actor[..., None] = raw_app.noop

    def rate(send: Callable[[], object]) -> float:
        start = time.perf_counter()
        for _ in range(DISPATCH_N):
            send()
        return DISPATCH_N / (time.perf_counter() - start)

    def jobkit_send() -> object:
        return jobkit_client.dispatch("bench:noop")

    jobkit_rates, raw_rates = [], []
    for _ in range(ROUNDS):
        raw_rates.append(rate(raw_actor.send))
        jobkit_rates.append(rate(jobkit_send))
        redis.Redis.from_url(url).flushdb()
    return statistics.median(jobkit_rates), statistics.median(raw_rates)


def _drain_rate(
    url: str, argv: list[str], env: dict[str, str], msgs_key: str, fill: Callable[[], None], count: int = WORKER_N
) -> float:
    """Prefill, start the worker, and time from its first ack to an empty queue."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    fill()
    assert client.hlen(msgs_key) == count, client.hlen(msgs_key)
    worker = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while client.hlen(msgs_key) >= count:
            time.sleep(0.002)
            assert time.monotonic() < deadline and worker.poll() is None, "worker did not start"
        started = time.perf_counter()
        while client.hlen(msgs_key) > 0:
            time.sleep(0.002)
            assert time.monotonic() < deadline, "worker did not drain the queue"
        return (count - 1) / (time.perf_counter() - started)
    finally:
        worker.terminate()
        worker.wait(60)


def bench_worker(url: str) -> tuple[float, float]:
    """Tasks per second drained by `dramatiq jobkit.actors` against `dramatiq bench.raw_app`, same processes/threads."""
    from bench import raw_app
    from jobkit.bootstrap import open_client

    flags = ["--processes", str(PROCESSES), "--threads", str(THREADS)]
    jobkit_env = _env(url, JOBKIT_NAMESPACE="jkbench")
    raw_env = _env(url, RAW_NAMESPACE="rawbench")
    jobkit_client = open_client()

    def fill_jobkit() -> None:
        for _ in range(WORKER_N):
            jobkit_client.dispatch("bench:noop")

    def fill_raw() -> None:
        for _ in range(WORKER_N):
            raw_app.noop.send()

    jobkit_rates, raw_rates = [], []
    for _ in range(ROUNDS):
        raw_rates.append(
            _drain_rate(url, [sys.executable, "-m", "dramatiq", "bench.raw_app", *flags], raw_env,
                        "rawbench:default.msgs", fill_raw)
        )  # fmt: skip
        jobkit_rates.append(
            _drain_rate(url, [sys.executable, "-m", "dramatiq", "jobkit.actors", *flags], jobkit_env,
                        "jkbench:default.msgs", fill_jobkit)
        )  # fmt: skip
    return statistics.median(jobkit_rates), statistics.median(raw_rates)


def main() -> int:
    from jobkit.store.embedded import EmbeddedRedis

    with EmbeddedRedis(Path(tempfile.mkdtemp(prefix="jk-bench-")), appendonly=False) as server:
        url = os.environ.get("BENCH_REDIS_URL") or server.url
        print(f"jobkit benchmarks on {url} ({ROUNDS} rounds each, medians; ratio = jobkit / raw Dramatiq)")
        jk, raw = bench_dispatch(url)
        print(f"dispatch  {DISPATCH_N} msgs   jobkit {jk:8.0f}/s   raw dramatiq {raw:8.0f}/s   ratio {jk / raw:.2f}")
        jk, raw = bench_worker(url)
        print(
            f"worker    {WORKER_N} no-ops  jobkit {jk:8.0f}/s   raw dramatiq {raw:8.0f}/s   ratio {jk / raw:.2f}"
            f"   ({PROCESSES} processes x {THREADS} threads)"
        )
        from bench.scheduler import scheduler_line

        print(scheduler_line(url))
        from bench.queues import main as queues_main

        queues_main(url)
    from bench.durability import durability_line

    print(durability_line())
    # The API and export benchmarks start their own servers and Redis.
    from bench.api import main as api_main
    from bench.export import main as export_main

    api_main()
    export_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
