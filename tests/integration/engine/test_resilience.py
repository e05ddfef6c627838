"""A worker killed with SIGKILL, and Redis going away: nothing is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

import pytest
import redis
from dramatiq.message import Message

from jobkit.bootstrap import build_broker
from jobkit.config.jobs_file import load_project
from jobkit.config.settings import Settings
from jobkit.services.client import Client
from jobkit.store.embedded import EmbeddedRedis
from tests.support import ROOT, start, wait_for

pytestmark = pytest.mark.slow

WORK_JOBS = """
queues: {default: {weight: 1}}
tasks:
  t:work: {handler: "tests.handlers:work", timeout: 1m}
"""


def worker_argv(threads: int) -> list[str]:
    return [sys.executable, "-m", "dramatiq", "jobkit.actors", "--processes", "1", "--threads", str(threads)]


def fill(client: Client, key: str, count: int, seconds: float, delay: float | None = None) -> None:
    for n in range(count):
        message: Message[None] = Message(
            queue_name="default",
            actor_name="t:work",
            args=(),
            kwargs={"key": key, "n": n, "seconds": seconds},
            options={},
        )
        client.broker.enqueue(message, delay=int(delay * 1000) if delay else None)


@pytest.mark.timeout(120)  # waits of up to 30 s each, on a machine that may be busy
def test_tasks_held_by_a_worker_killed_with_sigkill_rerun_within_30s(
    env: dict[str, str],
    settings: Settings,
    tmp_path: Path,
    redis_client: redis.Redis,
    namespace: str,
    processes: list[subprocess.Popen[str]],
) -> None:
    (tmp_path / "jobs.yaml").write_text(WORK_JOBS)
    env = {**env, "JOBKIT_JOBS": str(tmp_path / "jobs.yaml")}
    client = Client(
        settings, load_project(tmp_path / "jobs.yaml"), build_broker(settings, load_project(tmp_path / "jobs.yaml"))
    )
    key = f"{namespace}:w"
    fill(client, key, 5000, seconds=0.02)

    # Given two workers draining 5,000 tasks of 20 ms
    survivor = start(processes, worker_argv(8), env, ROOT, tmp_path / "a.log")
    victim = start(processes, worker_argv(8), env, ROOT, tmp_path / "b.log")
    heartbeats = f"{namespace}:__heartbeats__"
    wait_for(lambda: redis_client.zcard(heartbeats) == 2, timeout=30, what="two live workers")
    wait_for(lambda: redis_client.hlen(f"{key}:runs") >= 1500, timeout=60, what="1500 runs")

    # When one of them is killed with SIGKILL midway
    killed_at = time.time()
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()

    def beats() -> dict[str, float]:
        scored = cast(list[tuple[bytes, float]], redis_client.zrange(heartbeats, 0, -1, withscores=True))
        return {w.decode(): s for w, s in scored}

    # The dead worker is the one whose heartbeat no longer moves (taken after the kill: a beat may land just
    # before it); the live one beats at least every 250 ms.
    before = beats()
    wait_for(lambda: sum(beats().get(w, 0) > s for w, s in before.items()) == 1, what="the live worker's next beat")
    after = beats()
    dead = [w for w in before if after.get(w) == before[w]]
    assert len(dead) == 1, (before, after)
    held_rids = redis_client.smembers(f"{namespace}:__acks__.{dead[0]}.default")
    held = [
        Message.decode(data).kwargs["n"]
        for data in cast(list[bytes | None], redis_client.hmget(f"{namespace}:default.msgs", list(held_rids)))
        if data is not None
    ]
    assert held, "the killed worker held nothing: kill it earlier"

    # Then all 5,000 complete, and every task it held ran again within 30 s
    wait_for(lambda: redis_client.hlen(f"{key}:runs") == 5000, timeout=90, what="all 5000 tasks")
    last_start = {int(n): float(t) for n, t in redis_client.hgetall(f"{key}:last_start").items()}
    late = {n: last_start[n] - killed_at for n in held if not killed_at < last_start[n] <= killed_at + 30}
    assert late == {}, late
    starts = {int(n): int(c) for n, c in redis_client.hgetall(f"{key}:starts").items()}
    duplicates = sum(c - 1 for c in starts.values())
    print(f"killed worker held {len(held)} tasks; {duplicates} task(s) started twice (at least once delivery)")
    assert set(starts) == set(range(5000))
    assert duplicates <= len(held)
    assert survivor.poll() is None


@pytest.mark.timeout(120)  # waits of up to 30 s each, on a machine that may be busy
def test_delayed_tasks_due_during_a_10s_redis_outage_all_run(
    env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    # Given its own Redis with the append-only file on, two workers, and 500 tasks due in 2 s
    directory = Path(tempfile.mkdtemp(prefix="jk-outage-"))
    server = EmbeddedRedis(directory, appendonly=True).start()
    try:
        (tmp_path / "jobs.yaml").write_text(WORK_JOBS)
        env = {
            **env,
            "REDIS_URL": server.url,
            "JOBKIT_TEST_REDIS_URL": server.url,
            "JOBKIT_JOBS": str(tmp_path / "jobs.yaml"),
        }
        settings = Settings(redis_url=server.url, namespace=env["JOBKIT_NAMESPACE"])
        project = load_project(tmp_path / "jobs.yaml")
        client = Client(settings, project, build_broker(settings, project))
        check = redis.Redis.from_url(server.url)
        for name in ("a", "b"):
            start(processes, worker_argv(4), env, ROOT, tmp_path / f"{name}.log")
        wait_for(lambda: check.zcard(f"{settings.namespace}:__heartbeats__") == 2, timeout=30, what="two workers")
        key = f"{settings.namespace}:w"
        fill(client, key, 500, seconds=0, delay=2.0)

        # When Redis stops for 10 s while they fall due, then comes back from its append-only file
        server.stop()
        stopped = time.monotonic()
        while time.monotonic() - stopped < 10:
            time.sleep(0.5)  # the outage itself: 10 s with no Redis
        server.start()

        # Then all 500 run, exactly once each
        wait_for(lambda: check.hlen(f"{key}:runs") == 500, timeout=60, what="all 500 delayed tasks")
        runs = {int(n): int(c) for n, c in check.hgetall(f"{key}:runs").items()}
        assert set(runs) == set(range(500)) and set(runs.values()) == {1}
    finally:
        server.stop()
