"""`make bench`: jobkit against raw Dramatiq (and, in the peer line, taskiq) on the same Redis, side by side in one
run, reported as ratios.

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

from bench.procs import tree_cpu as _tree_cpu

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 3
DISPATCH_N = 5_000
WORKER_N = 10_000
PROCESSES, THREADS = 2, 8


def _env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "JOBKIT_"))}
    env.update(
        REDIS_URL=url, PYTHONPATH=str(ROOT), JOBKIT_JOBS=str(ROOT / "bench" / "jobs.yaml"), JOBKIT_SECRET="b" * 48
    )
    env.update(extra)
    return env


def bench_dispatch(url: str) -> tuple[float, float, float, float]:
    """Messages per second: jobkit.dispatch (validated) against actor.send on the stock broker; and jobkit.dispatch of
    the same payload to a task that declares its field sensitive (sealed) and to one that does not."""
    os.environ.update(_env(url, JOBKIT_NAMESPACE="jkbench", RAW_NAMESPACE="rawbench"))
    from dramatiq.actor import Actor

    from bench import raw_app
    from jobkit.bootstrap import open_client

    jobkit_client = open_client()
    raw_actor: Actor[..., None] = raw_app.noop

    def rate(send: Callable[[], object]) -> float:
        count = DISPATCH_N // 3
        start = time.perf_counter()
        for _ in range(count):
            send()
        return count / (time.perf_counter() - start)

    def jobkit_send() -> object:
        return jobkit_client.dispatch("bench:noop")

    def sealed_send() -> object:
        return jobkit_client.dispatch("bench:secret", token="reset-token-0123456789abcdef")

    def plain_send() -> object:
        return jobkit_client.dispatch("bench:plain", token="reset-token-0123456789abcdef")

    jobkit_rates, raw_rates, sealed_rates, plain_rates = [], [], [], []
    for _ in range(ROUNDS * 3):  # short rounds, alternated, so that each side sees the same machine
        raw_rates.append(rate(raw_actor.send))
        jobkit_rates.append(rate(jobkit_send))
        sealed_rates.append(rate(sealed_send))
        plain_rates.append(rate(plain_send))
        redis.Redis.from_url(url).flushdb()
    medians = (statistics.median(rates) for rates in (jobkit_rates, raw_rates, sealed_rates, plain_rates))
    return tuple(medians)  # type: ignore[return-value]


def _drain_rate(
    url: str,
    argv: list[str],
    env: dict[str, str],
    namespace: str,
    fill: Callable[[], None],
    count: int = WORKER_N,
    *,
    queue: str = "default",
    processes: int = PROCESSES,
) -> tuple[float, float]:
    """Prefill, start the worker, and time from its first ack to an empty queue; and the worker's CPU per task (all
    its processes, user + system), from the moment every worker process is consuming to the empty queue, so that
    neither boot nor shutdown counts."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    fill()
    msgs_key, heartbeats = f"{namespace}:{queue}.msgs", f"{namespace}:__heartbeats__"
    assert client.hlen(msgs_key) == count, client.hlen(msgs_key)
    worker = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while client.hlen(msgs_key) >= count:
            time.sleep(0.002)
            assert time.monotonic() < deadline and worker.poll() is None, "worker did not start"
        started = time.perf_counter()
        cpu_from, left = None, 0
        while (remaining := client.hlen(msgs_key)) > 0:
            if cpu_from is None and client.zcard(heartbeats) >= processes:
                cpu_from, left = _tree_cpu(worker.pid), remaining
            time.sleep(0.002)
            assert time.monotonic() < deadline, "worker did not drain the queue"
        rate = (count - 1) / (time.perf_counter() - started)
        assert cpu_from is not None and left > count // 2, "the worker processes were not all up before half the queue"
        return rate, (_tree_cpu(worker.pid) - cpu_from) / left
    finally:
        worker.terminate()
        worker.wait(60)


def bench_worker(url: str) -> tuple[float, float, float, float]:
    """Tasks per second drained by `jobkit worker` against `dramatiq bench.raw_app` with the same processes and threads,
    and the CPU per task of each (default log level: jobkit logs successes at DEBUG, so not at all)."""
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

    jobkit_runs, raw_runs = [], []
    jobkit_worker = str(Path(sys.executable).parent / "jobkit")
    for _ in range(ROUNDS):
        raw_runs.append(
            _drain_rate(url, [sys.executable, "-m", "dramatiq", "bench.raw_app", *flags], raw_env, "rawbench", fill_raw)
        )
        jobkit_runs.append(_drain_rate(url, [jobkit_worker, "worker", *flags], jobkit_env, "jkbench", fill_jobkit))
    return (
        statistics.median(rate for rate, _ in jobkit_runs),
        statistics.median(rate for rate, _ in raw_runs),
        statistics.median(cpu for _, cpu in jobkit_runs),
        statistics.median(cpu for _, cpu in raw_runs),
    )


def main() -> int:
    from jobkit.store.embedded import EmbeddedRedis

    with EmbeddedRedis(Path(tempfile.mkdtemp(prefix="jk-bench-")), appendonly=False) as server:
        url = os.environ.get("BENCH_REDIS_URL") or server.url
        print(f"jobkit benchmarks on {url} ({ROUNDS} rounds each, medians; ratio = jobkit / raw Dramatiq)")
        jk, raw, sealed, plain = bench_dispatch(url)
        print(f"dispatch  {DISPATCH_N} msgs   jobkit {jk:8.0f}/s   raw dramatiq {raw:8.0f}/s   ratio {jk / raw:.2f}")
        print(
            f"sealed    {DISPATCH_N} msgs   one field sensitive {sealed:8.0f}/s   the same, not {plain:8.0f}/s   "
            f"cost {plain / sealed:.2f}x   (goal <= 1.2x)"
        )
        jk, raw, jk_cpu, raw_cpu = bench_worker(url)
        print(
            f"worker    {WORKER_N} no-ops  jobkit {jk:8.0f}/s   raw dramatiq {raw:8.0f}/s   ratio {jk / raw:.2f}"
            f"   ({PROCESSES} processes x {THREADS} threads)"
        )
        print(
            f"worker CPU per task     jobkit {jk_cpu * 1e6:6.0f} us   raw dramatiq {raw_cpu * 1e6:6.0f} us   "
            f"ratio {jk_cpu / raw_cpu:.2f}   (user+sys of every worker process, default log level; goal <= 1)"
        )
        from bench.peers import main as peers_main

        peers_main(url)
        from bench.scheduler import scheduler_line

        print(scheduler_line(url))
        from bench.queues import main as queues_main

        queues_main(url)
        from bench.lifecycle import main as lifecycle_main

        lifecycle_main(url)

        from bench.search import search_line

        print(search_line(url))
        from bench.soak import soak_lines

        for line in soak_lines(url):  # minutes: BENCH_SOAK_N tasks (default 500,000) drained at full speed
            print(line, flush=True)
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
