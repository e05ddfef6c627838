"""Moving a Dramatiq fleet onto jobkit, in subprocesses on the real Redis: stock ``RedisBroker`` producers beside
``dramatiq jobkit.actors`` workers, and a plain ``dramatiq.Worker`` keeping Dramatiq's own shutdown semantics."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time
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


PLAIN_WORKER = """
import time
import dramatiq
from jobkit.bootstrap import open_client

broker = open_client().broker
worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
worker.start()
print("worker started", flush=True)
while True:
    time.sleep(0.05)
"""

TWO_WORKERS = """
import dramatiq
from jobkit.bootstrap import open_client

broker = open_client().broker

@dramatiq.actor(broker=broker, actor_name="plain_async")
async def plain_async() -> None:
    return None

first = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
first.start()
second = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
second.start()
first.stop(timeout=5_000)
second.stop(timeout=5_000)
print("both stopped", flush=True)
"""


def run_script(
    processes: list[subprocess.Popen[str]], env: dict[str, str], tmp_path: Path, source: str
) -> tuple[subprocess.Popen[str], Path]:
    (tmp_path / "jobs.yaml").write_text(
        'queues: {default: {weight: 1}}\ntasks:\n  t:record: {handler: "tests.handlers:record"}\n'
    )
    (tmp_path / "script.py").write_text(textwrap.dedent(source))
    log = tmp_path / "script.log"
    env = {**env, "JOBKIT_JOBS": str(tmp_path / "jobs.yaml")}
    return start(processes, [sys.executable, str(tmp_path / "script.py")], env, ROOT, log), log


def test_a_plain_worker_in_the_main_thread_keeps_dramatiqs_sigterm(
    env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    # Given a process that runs a dramatiq.Worker on jobkit's broker in its main thread, with no handler of its own
    script, log = run_script(processes, env, tmp_path, PLAIN_WORKER)
    wait_for(lambda: "worker started" in log.read_text(), timeout=30, what="the worker")

    # When it gets one SIGTERM, then it ends on it, as with any Dramatiq broker
    started = time.monotonic()
    script.send_signal(signal.SIGTERM)
    try:
        code = script.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail("the first SIGTERM was swallowed: the process still runs")
    assert code == -signal.SIGTERM, log.read_text()
    print(f"ended {time.monotonic() - started:.2f}s after one SIGTERM")


def test_a_process_that_runs_two_workers_with_an_async_actor_exits(
    env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    script, log = run_script(processes, env, tmp_path, TWO_WORKERS)
    try:
        code = script.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail("the process hangs at exit: " + log.read_text()[-2000:])
    assert code == 0, log.read_text()
    assert "both stopped" in log.read_text()
