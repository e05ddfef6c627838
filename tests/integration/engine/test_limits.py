"""Rate limits and concurrency caps across two `dramatiq jobkit.actors` processes of 8 threads each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis

from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support import ROOT, start, uses_project, wait_for
from tests.support.projects import FLOW_JOBS

project = uses_project(FLOW_JOBS)

pytestmark = pytest.mark.slow

#: Start times are taken by the handler, a few ms after the limiter (on Redis's clock) let the task go.
CLOCK_SLACK_S = 0.05


def start_workers(processes: list[subprocess.Popen[str]], env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(FLOW_JOBS)
    env = {**env, "JOBKIT_JOBS": str(tmp_path / "jobs.yaml")}
    argv = [sys.executable, "-m", "dramatiq", "jobkit.actors", "--processes", "2", "--threads", "8"]
    log = tmp_path / "workers.log"
    start(processes, argv, env, ROOT, log)
    wait_for(lambda: log.read_text().count("Worker process is ready") >= 2, timeout=60, what="2 workers ready")


@pytest.mark.timeout(120)  # waits of up to 30 s each, on a machine that may be busy
def test_rate_limit_10_per_second_lets_at_most_10_start_in_any_second_and_all_200_complete(
    client: Client,
    env: dict[str, str],
    tmp_path: Path,
    redis_client: redis.Redis,
    namespace: str,
    processes: list[subprocess.Popen[str]],
) -> None:
    # Given 200 tasks of a `rate_limit: 10/s` task and 2 worker processes x 8 threads
    key = f"{namespace}:rated"
    for n in range(200):
        client.dispatch("flow:rated", key=key, n=n)
    start_workers(processes, env, tmp_path)

    # When all have run
    wait_for(lambda: int(redis_client.get(f"{key}:done") or 0) >= 200, timeout=60, what="200 tasks done")

    # Then no second-long window saw more than 10 starts
    starts = sorted(float(t) for t in redis_client.lrange(f"{key}:starts", 0, -1))
    assert len(starts) == 200
    crowded = [(a, b) for a, b in zip(starts, starts[10:], strict=False) if b - a < 1.0 - CLOCK_SLACK_S]
    assert not crowded, crowded[:3]
    # And none failed, none was archived, none spent a retry, and waiting was not counted as processing
    stats = Queues(client).stats("default")
    assert (stats.processed_total, stats.failed_total, stats.archived, stats.size) == (200, 0, 0, 0)
    _, completed = Queues(client).tasks("default", "completed", size=1000)
    assert len(completed) == 200 and {task.retried for task in completed} == {0}


def test_concurrency_2_never_runs_more_than_2_at_once_across_processes(
    client: Client,
    env: dict[str, str],
    tmp_path: Path,
    redis_client: redis.Redis,
    namespace: str,
    processes: list[subprocess.Popen[str]],
) -> None:
    key = f"{namespace}:capped"
    for n in range(20):
        client.dispatch("flow:capped", key=key, n=n, seconds=0.2)
    start_workers(processes, env, tmp_path)

    wait_for(lambda: int(redis_client.get(f"{key}:done") or 0) >= 20, timeout=60, what="20 tasks done")

    assert int(redis_client.get(f"{key}:max") or 0) == 2
    stats = Queues(client).stats("default")
    assert (stats.processed_total, stats.failed_total, stats.archived) == (20, 0, 0)
    assert Queues(client).limits("flow:capped")["concurrency"] == 2
