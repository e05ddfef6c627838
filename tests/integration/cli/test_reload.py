"""`jobkit up --reload`: a valid edit of jobs.yaml, schedules.yaml or a handler restarts what reads it, gracefully;
a broken edit is reported and the old workers keep serving."""

from __future__ import annotations

import signal
import subprocess
import textwrap
from pathlib import Path

import pytest
import redis

from tests.support import JOBKIT, attempts, children, free_port, start, wait_for

pytestmark = pytest.mark.slow

JOBS = """\
# The project's tasks (this comment must survive the edits)
queues: {default: {weight: 1}}
worker: {processes: 2, threads: 2, shutdown_timeout: 30s}
tasks:
  app:record: {handler: "app.tasks:record"}
  app:slow: {handler: "tests.handlers:slow", timeout: 1m}
"""
HANDLERS = """\
import os

import redis


def record(key: str) -> None:
    redis.Redis.from_url(os.environ["JOBKIT_TEST_REDIS_URL"]).rpush(key, "{version}")
"""


@pytest.mark.timeout(240)
def test_reload_restarts_what_a_valid_edit_concerns_and_keeps_the_old_workers_on_a_broken_one(
    env: dict[str, str], tmp_path: Path, redis_client: redis.Redis, namespace: str,
    processes: list[subprocess.Popen[str]],
) -> None:  # fmt: skip
    # Given `jobkit up --reload` in a project folder with its own handler package
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "tasks.py").write_text(HANDLERS.format(version="v1"))
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(JOBS)
    port = free_port()
    env = {**env, "JOBKIT_API_PORT": str(port), "JOBKIT_SCHEDULES": str(tmp_path / "schedules.yaml")}
    log = tmp_path / "up.log"
    up = start(processes, [JOBKIT, "up", "--reload"], env, tmp_path, log)
    wait_for(lambda: log.read_text().count("Worker process is ready") == 2, timeout=60, what="two workers")
    wait_for(lambda: "--reload: watching" in log.read_text(), timeout=10)

    def parts() -> dict[str, set[int]]:
        found: dict[str, set[int]] = {"workers": set(), "scheduler": set(), "api": set()}
        for pid, command in children(up.pid).items():
            kind = "workers" if "jobkit.actors" in command else command.rpartition(" ")[2]
            found.setdefault(kind, set()).add(pid)
        return found

    def dispatch(task: str, payload: str, jobs_file: str = "jobs.yaml") -> None:
        subprocess.run(
            [JOBKIT, "dispatch", task, "--payload", payload], env={**env, "JOBKIT_JOBS": jobs_file}, cwd=tmp_path,
            check=True, capture_output=True,
        )  # fmt: skip

    def reloaded(count: int) -> bool:
        return log.read_text().count("reloaded: ") >= count

    first = parts()
    assert len(first["workers"]) == 2 and len(first["scheduler"]) == len(first["api"]) == 1

    # When jobs.yaml gains a task while a slow task runs
    slow = f"{namespace}:slow"
    dispatch("app:slow", f'{{"key": "{slow}", "seconds": 3}}')
    wait_for(lambda: attempts(redis_client, slow), timeout=20, what="the slow task running")
    jobs.write_text(JOBS + '  app:new: {handler: "app.tasks:record"}\n')
    early = f"{namespace}:early"
    dispatch("app:new", f'{{"key": "{early}"}}')  # before any worker knows app:new: it waits, it is not archived

    # Then every part is replaced once the old workers have finished, and the new task runs when dispatched
    wait_for(lambda: reloaded(1), timeout=60, what="the reload")
    text = log.read_text()
    assert "jobs.yaml changed: restarting the workers, the scheduler and the API (running tasks finish first)" in text
    assert "reloaded: the workers, the scheduler and the API run the new version" in text
    second = parts()
    assert all(second[kind] and not second[kind] & first[kind] for kind in ("workers", "scheduler", "api")), second
    assert redis_client.get(f"{slow}:done") == b"1" and len(attempts(redis_client, slow)) == 1  # it finished, once
    # the task dispatched before the reload runs after it, with no retry by hand
    assert wait_for(lambda: redis_client.lrange(early, 0, -1), timeout=40, what="the early task") == [b"v1"]
    new = f"{namespace}:new"
    dispatch("app:new", f'{{"key": "{new}"}}')
    assert wait_for(lambda: redis_client.lrange(new, 0, -1), timeout=20, what="the new task") == [b"v1"]

    # When a handler module changes, only the workers restart, and they run the new code
    (tmp_path / "app" / "tasks.py").write_text(HANDLERS.format(version="v2"))
    wait_for(lambda: reloaded(2), timeout=60, what="the code reload")
    third = parts()
    assert (third["scheduler"], third["api"]) == (second["scheduler"], second["api"])
    assert not third["workers"] & second["workers"]
    dispatch("app:new", f'{{"key": "{new}"}}')
    assert wait_for(lambda: redis_client.lrange(new, 1, -1), timeout=20, what="the new code") == [b"v2"]

    # When schedules.yaml appears, only the scheduler restarts, and it fires the new entry
    (tmp_path / "schedules.yaml").write_text(
        textwrap.dedent(f"""\
        schedules:
          beat: {{cron: "@every 1s", task: app:record, payload: {{key: "{namespace}:beat"}}}}
        """)
    )
    wait_for(lambda: reloaded(3), timeout=60, what="the scheduler reload")
    assert "schedules.yaml changed: restarting the scheduler\n" in log.read_text()
    fourth = parts()
    assert (fourth["workers"], fourth["api"]) == (third["workers"], third["api"])
    assert fourth["scheduler"] != third["scheduler"]
    wait_for(lambda: redis_client.llen(f"{namespace}:beat") >= 2, timeout=20, what="the new schedule firing")

    # When an edit breaks jobs.yaml, it is reported, nothing restarts, and the old workers keep serving
    broken = JOBS + '  app:new: {handler: "app.tasks:recrod"}\n'
    jobs.write_text(broken)
    wait_for(lambda: "finds problems" in log.read_text(), timeout=60, what="the problems reported")
    text = log.read_text()
    assert "jobs.yaml changed, but `jobkit check` finds problems (the running parts keep the previous version)" in text
    assert "jobs.yaml:7:" in text and "module 'app.tasks' has no attribute 'recrod'" in text
    assert parts() == fourth
    (tmp_path / "valid.yaml").write_text(JOBS)  # a client that still has a valid file
    dispatch("app:record", f'{{"key": "{namespace}:still"}}', "valid.yaml")
    assert wait_for(lambda: redis_client.lrange(f"{namespace}:still", 0, -1), timeout=20) == [b"v2"]

    up.send_signal(signal.SIGTERM)
    assert up.wait(40) == 0
