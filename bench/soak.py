"""The memory soak: does Redis stay bounded when a worker drains tasks as fast as it can for a long time?

``BENCH_SOAK_N`` tasks (default 500,000) of a no-op with the default retention (24 h, at most 10,000 completed per
queue) are fed to ``jobkit worker`` (2 processes x 8 threads) in rounds and drained at full speed. Redis's
``used_memory`` is read when nothing is queued: at the start, once 10,000 tasks have completed (the cap is reached),
every 100,000 tasks and at the end. Bounded means the end is within 10 MB of the 10,000 mark and the 100,000 samples
do not grow. Then bytes per pending task (jobkit next to raw Dramatiq's per pending message, on the same Redis),
per completed task (the first 10,000) and per archived task (a task that fails, with its error and traceback).

``make bench`` runs it as one of its lines; ``python -m bench.soak`` runs it alone on an embedded Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent

SOAK_N = int(os.environ.get("BENCH_SOAK_N", "500000"))
SAMPLE_EVERY = 100_000
CAP = 10_000
#: Tasks dispatched per round; a round is drained before the next when it ends on a sample.
ROUND = 5_000
PENDING_N = 20_000
ARCHIVED_N = 5_000
NAMESPACE = "jksoak"
PROCESSES, THREADS = 2, 8


def _used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def _settled_used(client: redis.Redis) -> int:
    """``used_memory`` once it stops moving (a worker's last heartbeat or counter may still be landing)."""
    last = _used(client)
    for _ in range(20):
        time.sleep(0.05)
        now = _used(client)
        if now == last:
            return now
        last = now
    return last


def _wait(condition: Any, what: str, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"soak: timed out waiting for {what}")
        time.sleep(0.01)


def pending_bytes(url: str) -> tuple[float, float]:
    """Bytes of Redis memory per pending task: jobkit's dispatch_many, and raw Dramatiq's ``actor.send``."""
    from bench import raw_app
    from jobkit.bootstrap import open_client

    plain = redis.Redis.from_url(url)
    client = open_client()
    plain.flushdb()
    before = _settled_used(plain)
    client.dispatch_many("bench:noop", [{} for _ in range(PENDING_N)])
    jobkit = (_settled_used(plain) - before) / PENDING_N
    plain.flushdb()
    before = _settled_used(plain)
    for _ in range(PENDING_N):
        raw_app.noop.send()
    raw = (_settled_used(plain) - before) / PENDING_N
    plain.flushdb()
    return jobkit, raw


class Soak:
    def __init__(self, url: str) -> None:
        from jobkit.bootstrap import open_client
        from jobkit.services.queues import Queues

        self.plain = redis.Redis.from_url(url)
        self.client = open_client()
        self.queues = Queues(self.client)
        from bench.__main__ import _env

        self.env = _env(url, JOBKIT_NAMESPACE=NAMESPACE)
        self.samples: list[tuple[int, int]] = []

    def processed(self) -> int:
        return int(self.plain.get(f"{NAMESPACE}:default.processed_total") or 0)

    def reached(self, total: int) -> bool:
        return self.processed() >= total

    def drained(self, total: int) -> bool:
        return self.processed() >= total and self.plain.hlen(f"{NAMESPACE}:default.msgs") == 0

    def sample(self, done: int) -> None:
        self.samples.append((done, _settled_used(self.plain)))

    def feed(self, task: str, count: int, marks: set[int], offset: int = 0) -> float:
        """Dispatch ``count`` tasks in rounds, keeping at most two rounds queued, and sample at each mark once the
        queue has drained up to it. Returns the tasks per second from the first dispatch to the last ack."""
        sent = 0
        started = time.perf_counter()
        while sent < count:
            _wait(partial(self.reached, offset + sent - ROUND), "the worker to keep up")
            n = min(ROUND, count - sent, min((m - sent for m in marks if m > sent), default=ROUND))
            self.client.dispatch_many(task, [{} for _ in range(n)])
            sent += n
            if sent in marks:
                _wait(partial(self.drained, offset + sent), f"{sent:,} tasks to complete")
                self.sample(sent)
        _wait(lambda: self.drained(offset + count), "the last tasks to complete")
        return count / (time.perf_counter() - started)

    def run(self) -> dict[str, Any]:
        self.plain.flushdb()
        self.sample(0)
        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "jobkit"), "worker", "--processes", str(PROCESSES), "--threads",
             str(THREADS)],
            env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait(lambda: self.plain.zcard(f"{NAMESPACE}:__heartbeats__") >= PROCESSES, "the worker processes")
            marks = {CAP, *range(SAMPLE_EVERY, SOAK_N + 1, SAMPLE_EVERY), SOAK_N}
            rate = self.feed("bench:noop", SOAK_N, marks)
            completed = self.queues.stats("default").completed
            before = _settled_used(self.plain)
            self.feed("bench:fail", ARCHIVED_N, set(), offset=SOAK_N)
            _wait(lambda: self.queues.stats("default").archived >= ARCHIVED_N, "the failures to be archived")
            archived = (_settled_used(self.plain) - before) / ARCHIVED_N
        finally:
            worker.terminate()
            worker.wait(60)
        start = self.samples[0][1]
        at_cap = dict(self.samples)[CAP]
        return {
            "rate": rate,
            "samples": self.samples,
            "completed": completed,
            "per_completed": (at_cap - start) / CAP,
            "per_archived": archived,
        }


def soak_lines(url: str) -> list[str]:
    """The soak's lines for ``make bench``: memory along the run, then bytes per task in each state."""
    from bench.__main__ import _env

    os.environ.update(_env(url, JOBKIT_NAMESPACE=NAMESPACE, RAW_NAMESPACE="rawsoak"))
    jobkit_pending, raw_pending = pending_bytes(url)
    found = Soak(url).run()
    samples: list[tuple[int, int]] = found["samples"]
    by_mark = dict(samples)
    at_cap, end = by_mark[CAP], samples[-1][1]
    steady = [used for done, used in samples if done > CAP]  # every 100,000 and the end
    spread = (max(steady) - min(steady)) if steady else 0
    mb = 1024 * 1024
    trail = "  ".join(f"{done // 1000}k {used / mb:.1f}" for done, used in samples)
    bounded = abs(end - at_cap) <= 10 * mb and spread <= 2 * mb
    return [
        f"soak      {SOAK_N} no-ops at {found['rate']:.0f}/s   Redis used_memory MB after: {trail}",
        f"soak      end - at {CAP:,} completed = {(end - at_cap) / mb:+.1f} MB (goal within 10 MB), spread of the "
        f"samples after it {spread / mb:.1f} MB, {found['completed']:,} completed kept: "
        + ("bounded" if bounded else "NOT bounded"),
        f"memory    bytes per task: pending {jobkit_pending:.0f} (raw dramatiq {raw_pending:.0f}, +"
        f"{jobkit_pending - raw_pending:.0f}; goal <= +100), completed {found['per_completed']:.0f}, archived (with "
        f"error and traceback) {found['per_archived']:.0f}",
    ]


def main(url: str | None = None) -> int:
    if url is not None:
        for line in soak_lines(url):
            print(line, flush=True)
        return 0
    from jobkit.store.embedded import EmbeddedRedis

    with EmbeddedRedis(Path(tempfile.mkdtemp(prefix="jk-soak-")), appendonly=False) as server:
        return main(os.environ.get("BENCH_REDIS_URL") or server.url)


if __name__ == "__main__":
    sys.exit(main())
