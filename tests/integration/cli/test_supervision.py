"""Supervision, end to end: `jobkit worker` and `jobkit up` replace a part killed with SIGKILL while the rest keep
working, and every task still completes (the dead worker's tasks come back through orphan recovery)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import redis
from dramatiq.message import Message

from jobkit.bootstrap import build_broker
from jobkit.config.jobs_file import load_project
from jobkit.config.settings import Settings
from jobkit.services.client import Client
from tests.support import JOBKIT, ROOT, children, free_port, start, wait_for

pytestmark = pytest.mark.slow

WORK_JOBS = """
queues: {default: {weight: 1}}
worker: {processes: 2, threads: 4, shutdown_timeout: 20s}
tasks:
  t:work: {handler: "tests.handlers:work", timeout: 1m}
  t:record: {handler: "tests.handlers:record"}
"""
TASKS = 2_000


def fill(settings: Settings, jobs: Path, key: str, count: int, seconds: float) -> None:
    project = load_project(jobs)
    client = Client(settings, project, build_broker(settings, project))
    for n in range(count):
        message: Message[None] = Message(
            queue_name="default", actor_name="t:work", args=(), kwargs={"key": key, "n": n, "seconds": seconds},
            options={},
        )  # fmt: skip
        client.broker.enqueue(message)
    client.broker.close()


def runs_by_pid(client: redis.Redis, key: str) -> dict[int, int]:
    return {int(pid): int(count) for pid, count in client.hgetall(f"{key}:pids").items()}


def worker_children(supervisor: int) -> dict[int, str]:
    return {pid: command for pid, command in children(supervisor).items() if "jobkit.actors" in command}


def descendants(pid: int) -> set[int]:
    found = set(children(pid))
    for child in list(found):
        found |= descendants(child)
    return found


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return str(answer.read().decode())
    except OSError:
        return None


@pytest.mark.timeout(180)  # 2,000 tasks, the 15 s heartbeat timeout, a busy 2-core machine
@pytest.mark.parametrize("victim", ["worker process", "main process"])
def test_jobkit_worker_replaces_a_child_killed_with_sigkill_and_every_task_completes(
    victim: str,
    env: dict[str, str],
    settings: Settings,
    tmp_path: Path,
    redis_client: redis.Redis,
    namespace: str,
    processes: list[subprocess.Popen[str]],
) -> None:
    # Given `jobkit worker` with two children draining 2,000 tasks of 30 ms
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(WORK_JOBS)
    env = {**env, "JOBKIT_JOBS": str(jobs)}
    key = f"{namespace}:w"
    fill(settings, jobs, key, TASKS, seconds=0.03)
    log = tmp_path / "worker.log"
    supervisor = start(processes, [JOBKIT, "worker"], env, ROOT, log)
    wait_for(lambda: len(runs_by_pid(redis_client, key)) == 2, timeout=60, what="both children running tasks")
    wait_for(lambda: redis_client.hlen(f"{key}:runs") >= 300, timeout=60, what="300 runs")
    before = worker_children(supervisor.pid)
    assert len(before) == 2, before

    # When one child is killed with SIGKILL: the Dramatiq worker process running its tasks, or its main process
    doomed_worker, survivor = sorted(runs_by_pid(redis_client, key))
    doomed = doomed_worker
    if victim == "main process":
        doomed = next(pid for pid in before if doomed_worker in children(pid))
    survivor_runs = runs_by_pid(redis_client, key)[survivor]
    killed_at = time.monotonic()
    os.kill(doomed, signal.SIGKILL)

    # Then the other child keeps going, and a new child appears within 5 s
    wait_for(
        lambda: runs_by_pid(redis_client, key)[survivor] >= survivor_runs + 50, timeout=5, what="the survivor working"
    )
    new = wait_for(lambda: set(worker_children(supervisor.pid)) - set(before), timeout=5, what="a new child")
    appeared = time.monotonic() - killed_at
    wait_for(lambda: len(runs_by_pid(redis_client, key)) == 3, timeout=30, what="the new child running tasks")

    # And all 2,000 complete (the dead one's tasks came back), and the supervisor logged how the child ended
    wait_for(lambda: redis_client.hlen(f"{key}:runs") == TASKS, timeout=90, what=f"all {TASKS} tasks")
    completed = time.monotonic() - killed_at
    assert {int(n) for n in redis_client.hkeys(f"{key}:runs")} == set(range(TASKS))
    text = log.read_text()
    if victim == "worker process":
        assert f"Worker with PID {doomed} exited unexpectedly (code -9)" in text
        assert "exited with code 1: its Dramatiq worker process died or was killed" in text
    else:
        assert f"(pid {doomed}) killed by SIGKILL after " in text
        assert "outlived its main process; asked it to stop (running tasks finish)" in text
    assert supervisor.poll() is None and len(worker_children(supervisor.pid)) == 2
    print(f"{victim} killed: new child after {appeared:.2f}s (pid {min(new)}), all {TASKS} done {completed:.1f}s later")

    # And SIGTERM still stops everything cleanly
    family = descendants(supervisor.pid)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(40) == 0
    assert [pid for pid in family if running(pid)] == []


@pytest.mark.timeout(240)
def test_jobkit_up_replaces_a_dead_worker_api_or_scheduler_while_the_rest_keep_running(
    env: dict[str, str],
    settings: Settings,
    tmp_path: Path,
    redis_client: redis.Redis,
    namespace: str,
    processes: list[subprocess.Popen[str]],
) -> None:
    # Given `jobkit up` on the test's Redis, draining 2,000 tasks, with a schedule firing every second
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(WORK_JOBS)
    schedules = tmp_path / "schedules.yaml"
    beat = f"{namespace}:beat"
    schedules.write_text(f'schedules:\n  beat: {{cron: "@every 1s", task: t:record, payload: {{key: "{beat}"}}}}\n')
    port = free_port()
    env = {
        **env, "JOBKIT_JOBS": str(jobs), "JOBKIT_SCHEDULES": str(schedules), "JOBKIT_API_PORT": str(port),
        "JOBKIT_LOG_SUCCESS": "0",
    }  # fmt: skip
    key = f"{namespace}:w"
    fill(settings, jobs, key, TASKS, seconds=0.03)
    log = tmp_path / "up.log"
    up = start(processes, [JOBKIT, "up"], env, ROOT, log)
    health = f"http://127.0.0.1:{port}/health"
    wait_for(lambda: _get(health), timeout=60, what="the API")
    wait_for(lambda: len(runs_by_pid(redis_client, key)) == 2, timeout=60, what="both workers running tasks")

    def part(word: str) -> int:
        [pid] = [pid for pid, command in children(up.pid).items() if command.endswith(f"jobkit.cli {word}")]
        return pid

    api, scheduler = part("api"), part("scheduler")

    # When a worker process is killed with SIGKILL
    doomed, survivor = sorted(runs_by_pid(redis_client, key))
    before = worker_children(up.pid)
    survivor_runs = runs_by_pid(redis_client, key)[survivor]
    os.kill(doomed, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: runs_by_pid(redis_client, key)[survivor] >= survivor_runs + 50, timeout=5, what="the survivor")
    worker_back = wait_for(lambda: set(worker_children(up.pid)) - set(before), timeout=5, what="a new worker")
    worker_delay = time.monotonic() - killed_at

    # Then the API and the scheduler never stopped
    assert (part("api"), part("scheduler")) == (api, scheduler)
    assert json.loads(_get(health) or "{}").get("redis") == "ok"

    # When the API is killed, then the scheduler: each comes back within 5 s, and the workers keep going
    delays = {}
    for word, pid in (("api", api), ("scheduler", scheduler)):
        runs = redis_client.hlen(f"{key}:runs")
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()

        def replaced(word: str = word, old: int = pid) -> bool:
            return part_or_none(up.pid, word) not in (None, old)

        def still_working(runs: int = runs) -> bool:
            return int(redis_client.hlen(f"{key}:runs")) > runs

        wait_for(replaced, timeout=5, what=f"a new {word}")
        delays[word] = time.monotonic() - killed_at
        wait_for(still_working, timeout=5, what="workers still working")
    wait_for(lambda: _get(health), timeout=30, what="the new API answering")
    fires = redis_client.llen(f"{beat}:times")
    wait_for(lambda: redis_client.llen(f"{beat}:times") >= fires + 2, timeout=20, what="the new scheduler firing")

    # And all 2,000 complete
    wait_for(lambda: redis_client.hlen(f"{key}:runs") == TASKS, timeout=90, what=f"all {TASKS} tasks")
    assert {int(n) for n in redis_client.hkeys(f"{key}:runs")} == set(range(TASKS))
    text = log.read_text()
    assert f"(pid {api}) killed by SIGKILL after " in text and f"(pid {scheduler}) killed by SIGKILL after " in text
    print(
        f"new worker after {worker_delay:.2f}s (pid {min(worker_back)}), "
        f"API after {delays['api']:.2f}s, scheduler after {delays['scheduler']:.2f}s"
    )

    # And Ctrl-C stops all of it cleanly
    family = descendants(up.pid)
    up.send_signal(signal.SIGINT)
    assert up.wait(40) == 0
    assert [pid for pid in family if running(pid)] == []


def part_or_none(parent: int, word: str) -> int | None:
    found = [pid for pid, command in children(parent).items() if command.endswith(f"jobkit.cli {word}")]
    return found[0] if found else None
