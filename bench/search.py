"""Search benchmark: one answer of ``Search.search`` over 100,000 stored tasks, for text that misses and that hits."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
TASKS = 100_000
ROUNDS = 40
# What the filled tasks look like: the repository's jobs.yaml, a sensitive field among them.
TEMPLATES = [
    ("email:send", {"to": "ann@example.com", "subject": "Your invoice", "body": "Your invoice is ready"}),
    ("email:verification", {"to": "bob@example.com", "name": "Bob", "token": "secret-token-0123456789",
                            "base_url": "https://example.com/verify"}),
    ("export:process", {"user_id": 7, "export_type": "csv", "export": "posts_by_user", "params": {"user_id": 7},
                        "filename": "posts.csv"}),
]  # fmt: skip
#: Text that no task has (the whole store is looked at), text a single task has, and text many have.
MISSES = ("no-such-text", "zz9 plural", "secret-token", "4242424242")
RARE = ("n99999", "host n54321", "posts n77777")
COMMON = ("bravo", "invoice", "ConnectionError", "email:verification")


def _percentiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def search_timing(url: str) -> dict[str, tuple[float, float, int, int]]:
    """p50 and p95 (ms) of one answer per kind of text, with how many answers looked at every task, of how many."""
    sys.path.insert(0, str(ROOT))
    from jobkit.bootstrap import open_client
    from jobkit.config.jobs_file import load_project
    from jobkit.config.settings import Settings
    from jobkit.services.queues import Queues
    from jobkit.services.search import Search
    from tests.support.filling import fill_tasks

    client = open_client(Settings(redis_url=url, namespace="sbench", secret="b" * 48), load_project(ROOT / "jobs.yaml"))
    redis.Redis.from_url(url).flushdb()
    fill_tasks(client, TASKS, TEMPLATES)
    search = Search(Queues(client))
    assert sum(s.size + s.archived + s.completed for s in search.queues.all_stats()) == TASKS
    found: dict[str, tuple[float, float, int, int]] = {}
    times: dict[str, list[float]] = {"miss": [], "rare hit": [], "common hit": []}
    complete: dict[str, int] = dict.fromkeys(times, 0)
    for round_number in range(ROUNDS):  # the kinds alternate, so each sees the same machine
        for kind, texts in (("miss", MISSES), ("rare hit", RARE), ("common hit", COMMON)):
            text = texts[round_number % len(texts)]
            started = time.perf_counter()
            page = search.search(text)
            times[kind].append((time.perf_counter() - started) * 1000)
            complete[kind] += page.cursor is None
            if kind == "miss":
                assert page.tasks == [], text
    for kind, samples in times.items():
        p50, p95 = _percentiles(samples)
        found[kind] = (p50, p95, complete[kind], len(samples))
    redis.Redis.from_url(url).flushdb()
    return found


def search_line(url: str) -> str:
    found = search_timing(url)
    miss, rare, common = found["miss"], found["rare hit"], found["common hit"]
    return (
        f"search    {TASKS:,} tasks  miss p50 {miss[0]:.0f} ms p95 {miss[1]:.0f} ms "
        f"(every task looked at in {miss[2]}/{miss[3]} answers)   rare hit p50 {rare[0]:.0f} ms p95 {rare[1]:.0f} ms   "
        f"common hit p50 {common[0]:.1f} ms p95 {common[1]:.1f} ms   (goal p95 < 300 ms)"
    )


def main() -> None:
    from jobkit.store.embedded import EmbeddedRedis

    with EmbeddedRedis(Path(tempfile.mkdtemp(prefix="jk-sbench-")), appendonly=False) as server:
        print(search_line(server.url))


if __name__ == "__main__":
    main()
