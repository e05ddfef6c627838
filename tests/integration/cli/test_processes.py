"""End to end, in subprocesses: the stock Dramatiq CLI, graceful and hard shutdown, `jobkit up` + `jobkit dispatch`."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import httpx
import pytest
import redis

from jobkit.cli.ops import connection_limits
from jobkit.services.auth import mint_token
from tests.support import JOBKIT, ROOT, attempts, free_port, start, wait_for
from tests.support.tokens import SECRET

pytestmark = pytest.mark.slow


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return str(answer.read().decode())
    except OSError:
        return None


def ack_members(client: redis.Redis, namespace: str) -> int:
    return sum(client.scard(key) for key in client.scan_iter(f"{namespace}:__acks__.*.*"))


def dramatiq_argv(*flags: str) -> list[str]:
    return [sys.executable, "-m", "dramatiq", "jobkit.actors", *flags]


def worker_argv(command: str, threads: int) -> list[str]:
    """One worker process with ``threads`` threads, started the Dramatiq way or the jobkit way (which runs the
    former with jobs.yaml's worker settings; the flags given after them win)."""
    flags = ("--processes", "1", "--threads", str(threads))
    return [JOBKIT, "worker", *flags] if command == "jobkit worker" else dramatiq_argv(*flags)


WORKER_COMMANDS = pytest.mark.parametrize("command", ["dramatiq jobkit.actors", "jobkit worker"])


def test_a_task_from_a_temporary_jobs_yaml_runs_under_the_stock_dramatiq_cli(
    env: dict[str, str],
    tmp_path: Path,
    redis_client: redis.Redis,
    namespace: str,
    processes: list[subprocess.Popen[str]],
) -> None:
    # Given a new task declared in a temporary jobs.yaml, with its handler in a temporary module
    (tmp_path / "video_jobs.py").write_text(
        textwrap.dedent(
            """
            import os, redis

            def process_video(video_id: int, quality: str, key: str) -> None:
                redis.Redis.from_url(os.environ["JOBKIT_TEST_REDIS_URL"]).rpush(key, f"{video_id}@{quality}")
            """
        )
    )
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent(
            """
            queues: {low: {weight: 1}}
            tasks:
              video:process: {handler: "video_jobs:process_video", queue: low}
            """
        )
    )
    env = {**env, "JOBKIT_JOBS": str(tmp_path / "jobs.yaml")}
    key = f"{namespace}:video"

    # When the plain Dramatiq CLI runs jobkit.actors and the task is dispatched from the command line
    worker = start(processes, dramatiq_argv("--processes", "1", "--threads", "2"), env, tmp_path, tmp_path / "w.log")
    dispatched = subprocess.run(
        [JOBKIT, "dispatch", "video:process", "--payload", f'{{"video_id": 7, "quality": "720p", "key": "{key}"}}'],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip

    # Then the task ran in the worker with its payload as keyword arguments
    assert dispatched.returncode == 0, dispatched.stderr
    assert len(dispatched.stdout.strip()) == 36
    assert wait_for(lambda: redis_client.lrange(key, 0, -1), timeout=20) == [b"7@720p"]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0


@WORKER_COMMANDS
def test_sigterm_lets_four_running_tasks_finish_and_exits_0_with_no_ack_left(
    command: str,
    env: dict[str, str],
    tmp_path: Path,
    redis_client: redis.Redis,
    namespace: str,
    processes: list[subprocess.Popen[str]],
) -> None:
    (tmp_path / "jobs.yaml").write_text(
        'queues: {default: {weight: 1}}\ntasks:\n  test:slow: {handler: "tests.handlers:slow", timeout: 1m}\n'
    )
    env = {**env, "JOBKIT_JOBS": str(tmp_path / "jobs.yaml")}
    key = f"{namespace}:graceful"
    worker = start(processes, worker_argv(command, threads=4), env, ROOT, tmp_path / "w.log")
    for _ in range(4):
        subprocess.run(
            [JOBKIT, "dispatch", "test:slow", "--payload", f'{{"key": "{key}", "seconds": 2}}'],
            env=env, cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip

    # When SIGTERM arrives while all four run
    wait_for(lambda: len(attempts(redis_client, key)) == 4, timeout=20, what="4 running tasks")
    worker.send_signal(signal.SIGTERM)

    # Then all four complete, the worker exits 0 and nothing is left in any ack set
    assert worker.wait(30) == 0
    assert int(redis_client.get(f"{key}:done") or 0) == 4
    assert ack_members(redis_client, namespace) == 0
    assert redis_client.hlen(f"{namespace}:default.msgs") == 0


@WORKER_COMMANDS
def test_a_second_sigterm_stops_at_once_and_hands_every_task_back(
    command: str,
    env: dict[str, str],
    tmp_path: Path,
    redis_client: redis.Redis,
    namespace: str,
    processes: list[subprocess.Popen[str]],
) -> None:
    (tmp_path / "jobs.yaml").write_text(
        'queues: {default: {weight: 1}}\ntasks:\n  test:slow: {handler: "tests.handlers:slow", timeout: 1m}\n'
    )
    env = {**env, "JOBKIT_JOBS": str(tmp_path / "jobs.yaml")}
    key = f"{namespace}:hard"
    worker = start(processes, worker_argv(command, threads=2), env, ROOT, tmp_path / "w.log")
    for _ in range(4):  # 2 run, 2 wait prefetched in the worker
        subprocess.run(
            [JOBKIT, "dispatch", "test:slow", "--payload", f'{{"key": "{key}", "seconds": 30}}'],
            env=env, cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
    wait_for(lambda: len(attempts(redis_client, key)) == 2, timeout=20, what="2 running tasks")
    wait_for(lambda: redis_client.llen(f"{namespace}:default") == 0, what="the other 2 prefetched")

    # When SIGTERM comes twice
    worker.send_signal(signal.SIGTERM)
    wait_for(lambda: redis_client.llen(f"{namespace}:default") == 2, what="prefetched tasks handed back")
    worker.send_signal(signal.SIGTERM)

    # Then the worker stops long before the 30 s tasks end (Dramatiq's kill: exit code 1), and all four tasks are
    # pending again
    assert worker.wait(10) == 1
    assert redis_client.llen(f"{namespace}:default") == 4
    assert redis_client.hlen(f"{namespace}:default.msgs") == 4
    assert ack_members(redis_client, namespace) == 0
    assert redis_client.get(f"{key}:done") is None


@pytest.mark.parametrize("command", ["jobkit worker", "dramatiq jobkit.actors"])
def test_a_worker_refuses_to_start_on_a_broken_jobs_yaml_with_the_checker_text(
    env: dict[str, str], tmp_path: Path, command: str
) -> None:
    (tmp_path / "jobs.yaml").write_text("queues: {default: {weight: 1}}\ntasks:\n  a:b: {handler: nope:nothing}\n")
    env = {**env, "JOBKIT_JOBS": "jobs.yaml"}
    argv = [JOBKIT, "worker"] if command == "jobkit worker" else dramatiq_argv("--processes", "1")

    result = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)

    expected = "jobs.yaml:3:18: tasks.a:b.handler: no module named 'nope' (is it installed, or next to jobs.yaml?)"
    assert result.returncode != 0
    assert expected in result.stderr + result.stdout


def test_jobkit_up_runs_redis_and_workers_and_a_dispatched_task_runs(
    env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    # Given `jobkit up` with no Redis configured (the embedded one starts) and the shipped jobs.yaml
    env = {k: v for k, v in env.items() if k != "REDIS_URL"}
    env["JOBKIT_DATA_DIR"] = str(tmp_path / "var")
    with socket.socket() as probe:  # a free port for the API
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env["JOBKIT_API_PORT"] = str(port)
    log = tmp_path / "up.log"
    up = start(processes, [JOBKIT, "up"], env, ROOT, log)
    wait_for(lambda: log.read_text().count("Worker process is ready") >= 2, timeout=60, what="workers ready")

    # And the API answers on loopback, with the secret created private and a dashboard link printed
    health = wait_for(lambda: _get(f"http://127.0.0.1:{port}/health"), timeout=30, what="the API")
    assert json.loads(health)["redis"] == "ok"
    assert f"dashboard http://127.0.0.1:{port}/dashboard#token=" in log.read_text()
    assert (tmp_path / "var" / "secret").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "var" / "app.db").exists()

    # When a task is dispatched from another terminal
    dispatched = subprocess.run(
        [JOBKIT, "dispatch", "email:send", "--payload", '{"to": "user@example.com", "subject": "Hi", "body": "Yo"}'],
        env=env, cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip

    # Then it prints the task id, the worker log shows it ran, and the mail is in the outbox
    assert dispatched.returncode == 0, dispatched.stderr
    task_id = dispatched.stdout.strip()
    wait_for(lambda: f"email:send {task_id} done" in log.read_text(), timeout=20, what="the task in the log")
    assert len(list((tmp_path / "var" / "mail").glob("[!.]*.eml"))) == 1
    # And an export runs into a private file too
    exported = subprocess.run(
        [JOBKIT, "dispatch", "export:process", "--payload",
         '{"export_type": "csv", "export": "posts_by_user", "user_id": 1, "filename": "mine.csv"}'],
        env=env, cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    wait_for(lambda: (tmp_path / "var" / "exports" / "mine.csv").exists(), timeout=20, what="the export")

    # And Ctrl-C stops everything cleanly, Redis included
    up.send_signal(signal.SIGINT)
    assert up.wait(30) == 0
    assert (tmp_path / "var" / "redis" / "appendonly.aof").exists()
    assert not (tmp_path / "var" / "redis.sock").exists()

    # And everything it wrote is its owner's only: folders 0700, files 0600 (the AOF holds every payload)
    var = tmp_path / "var"
    private = [var / "redis" / "appendonly.aof", var / "redis" / "redis.log", var / "secret"]
    private += [*(var / "mail").glob("[!.]*.eml"), var / "exports" / "mine.csv"]
    assert {str(p.relative_to(var)): oct(p.stat().st_mode & 0o777) for p in private} == {
        str(p.relative_to(var)): "0o600" for p in private
    }
    folders = [var, var / "redis", var / "mail", var / "exports"]
    assert {str(p): oct(p.stat().st_mode & 0o777) for p in folders} == {str(p): "0o700" for p in folders}


def test_sigterm_ends_open_event_streams_and_the_api_exits_at_once(
    env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    # Given `jobkit api` with a dashboard's event stream open
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env.update(JOBKIT_SECRET=SECRET, JOBKIT_API_PORT=str(port), JOBKIT_JOBS=str(ROOT / "jobs.yaml"))
    api = start(processes, [JOBKIT, "api"], env, ROOT, tmp_path / "api.log")
    wait_for(lambda: _get(f"http://127.0.0.1:{port}/health"), timeout=30, what="the API")
    headers = {"Authorization": f"Bearer {mint_token(SECRET, 'ops', 'viewer')}"}
    lines: list[str] = []
    stopped_at = 0.0
    with httpx.stream("GET", f"http://127.0.0.1:{port}/api/jobs/events", headers=headers, timeout=10) as stream:
        for line in stream.iter_lines():
            lines.append(line)
            if line == "event: stats" and not stopped_at:  # When the server is told to stop
                api.send_signal(signal.SIGTERM)
                stopped_at = time.monotonic()

    # Then the stream ends with an `end` event, and the process exits cleanly at once
    assert "event: end" in lines
    assert api.wait(10) in (0, -signal.SIGTERM)
    assert time.monotonic() - stopped_at < 3


def test_one_token_opening_many_streams_under_a_low_file_limit_leaves_the_api_answering(
    env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    # Given `jobkit api` allowed 128 open files (the review ran 300 streams of one token under `ulimit -n 256`: the
    # server ran out of descriptors and /health failed)
    port = free_port()
    env.update(JOBKIT_SECRET=SECRET, JOBKIT_API_PORT=str(port), JOBKIT_JOBS=str(ROOT / "jobs.yaml"))
    start(processes, ["sh", "-c", f'ulimit -n 128 && exec "{JOBKIT}" api'], env, ROOT, tmp_path / "api.log")
    wait_for(lambda: _get(f"http://127.0.0.1:{port}/health"), timeout=30, what="the API")
    tokens = [mint_token(SECRET, f"viewer{n}", "viewer") for n in range(12)]
    statuses: list[int] = []
    with contextlib.ExitStack() as streams:
        # When one token asks for 10 streams, and then 11 more tokens for 4 each
        for token in [tokens[0]] * 10 + [token for token in tokens[1:] for _ in range(4)]:
            response = streams.enter_context(
                httpx.stream("GET", f"http://127.0.0.1:{port}/api/jobs/events",
                             headers={"Authorization": f"Bearer {token}"}, timeout=10)
            )  # fmt: skip
            statuses.append(response.status_code)
            if response.status_code != 200:
                response.read()
                assert response.status_code == 429 and "streams open" in response.json()["detail"], response.text
        # Then the first token got 4, the process kept what its file limit allows, and the rest were told why
        assert statuses[:10] == [200] * 4 + [429] * 6
        assert statuses.count(200) == connection_limits(128)[1] == 32
        # And the API still answers every other request
        assert _get(f"http://127.0.0.1:{port}/health") is not None
