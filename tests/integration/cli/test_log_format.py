"""JOBKIT_LOG_FORMAT=json: every line of every process `jobkit up` starts is one JSON object (for a log shipper)."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support import JOBKIT, ROOT, free_port, start, wait_for

pytestmark = pytest.mark.slow

JOBS = """
queues: {default: {weight: 1}}
worker: {processes: 2, threads: 2, shutdown_timeout: 10s}
tasks:
  t:record: {handler: "tests.handlers:record"}
  t:permanent: {handler: "tests.handlers:permanent"}
"""


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def records(log: Path) -> list[dict[str, Any]]:
    """Every line as JSON (a line that is not JSON fails the test, showing the line)."""
    found = []
    for line in log.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}")
    return found


@pytest.mark.timeout(120)
def test_jobkit_up_with_json_logs_writes_only_json_lines_from_every_process(
    env: dict[str, str], tmp_path: Path, namespace: str, processes: list[subprocess.Popen[str]]
) -> None:
    (tmp_path / "jobs.yaml").write_text(JOBS)
    (tmp_path / "schedules.yaml").write_text(
        f'schedules:\n  beat: {{cron: "@every 1s", task: t:record, payload: {{key: "{namespace}:beat"}}}}\n'
    )
    port = free_port()
    env = {
        **env, "JOBKIT_LOG_FORMAT": "json", "JOBKIT_JOBS": str(tmp_path / "jobs.yaml"),
        "JOBKIT_SCHEDULES": str(tmp_path / "schedules.yaml"), "JOBKIT_API_PORT": str(port),
    }  # fmt: skip
    log = tmp_path / "up.log"
    up = start(processes, [JOBKIT, "up"], env, ROOT, log)
    wait_for(lambda: log.read_text().count("Worker process is ready") == 2, timeout=60, what="two workers")
    wait_for(lambda: _up(f"http://127.0.0.1:{port}/health"), timeout=30, what="the API")

    def dispatch(task: str) -> str:
        payload = json.dumps({"key": f"{namespace}:{task}"})
        done = subprocess.run(
            [JOBKIT, "dispatch", task, "--payload", payload], env=env, cwd=ROOT, capture_output=True, text=True,
            check=True,
        )  # fmt: skip
        return done.stdout.strip()

    ok, dead = dispatch("t:record"), dispatch("t:permanent")
    wait_for(lambda: f"{ok} done in" in log.read_text() and f"{dead} archived" in log.read_text(), timeout=20)
    up.send_signal(signal.SIGTERM)
    assert up.wait(40) == 0

    lines = records(log)
    loggers = {line["logger"] for line in lines}
    assert {"jobkit.supervisor", "jobkit.scheduler", "jobkit.api", "jobkit.tasks"} <= loggers, loggers
    assert {"dramatiq.MainProcess", "dramatiq.WorkerProcess(0)"} <= loggers, loggers
    assert len({line["pid"] for line in lines}) >= 6  # up, 2 Dramatiq main processes and their workers, scheduler, API
    [done] = [line for line in lines if line.get("task_id") == ok]
    assert (done["level"], done["outcome"], done["task"]) == ("INFO", "done", "t:record")
    assert done["message"].startswith(f"t:record {ok} done in ") and isinstance(done["duration_ms"], float)
    [archived] = [line for line in lines if line.get("task_id") == dead]
    assert (archived["level"], archived["outcome"]) == ("ERROR", "archived")
    assert " archived (SkipRetry) in " in archived["message"]
    assert any(line["message"].startswith("dashboard http://") for line in lines)
    assert "#token=" not in log.read_text()  # a log shipper gets no admin token
