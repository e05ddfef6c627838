"""API benchmarks: trigger throughput against a bare Litestar route (same uvicorn settings, same run), and
``GET /api/jobs/stats`` latency with 1,000,000 pending tasks."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-" + "x" * 40
ROUNDS, SECONDS, CONCURRENCY = 3, 4.0, 32
BODY = {"to": "user@example.com", "subject": "Test Email", "body": "This is a test email from background job"}
ANSWER = {"message": "Email queued successfully", "status": "queued", "task_id": "0" * 36, "task": "email:send"}


def jobkit_app() -> Any:
    from jobkit.api import create_app

    return create_app()


def bare_app() -> Any:
    """The baseline: the same route shape and JSON answer, with no token check, validation or Redis."""
    from litestar import Litestar, post

    @post("/api/jobs/trigger/email", status_code=202, sync_to_thread=True)
    def trigger(data: dict[str, Any]) -> dict[str, Any]:
        return {**ANSWER, "queue": "default"}

    return Litestar([trigger], logging_config=None)


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(factory: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    argv = [sys.executable, "-m", "uvicorn", f"bench.api:{factory}", "--factory", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip
    process = subprocess.Popen(argv, env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(base + "/nothing", timeout=1)
            return process, base
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{factory} did not start") from None
            time.sleep(0.05)


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "%s"
"""


def _rate(url: str, headers: dict[str, str]) -> float:
    """Requests/s from wrk (a C load generator, so the server is what is measured), one thread, 32 connections."""
    import json

    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT % (json.dumps(BODY), headers["Authorization"]))
    argv = ["wrk", "-t1", f"-c{CONCURRENCY}", f"-d{SECONDS:g}s", "-s", script.name, url]
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    if "Non-2xx" in output:
        raise RuntimeError(f"wrk saw errors from {url}:\n{output}")
    return float(next(line.split()[1] for line in output.splitlines() if line.startswith("Requests/sec:")))


def main() -> int:
    from bench.queues import _FILL
    from jobkit.services.auth import mint_token
    from jobkit.store.embedded import EmbeddedRedis

    with EmbeddedRedis(Path(tempfile.mkdtemp(prefix="jk-apib-")), appendonly=False) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "JOBKIT_"))}
        env.update(REDIS_URL=server.url, JOBKIT_JOBS=str(ROOT / "jobs.yaml"), JOBKIT_NAMESPACE="apibench",
                   JOBKIT_SECRET=SECRET, PYTHONPATH=str(ROOT))  # fmt: skip
        headers = {"Authorization": f"Bearer {mint_token(SECRET, 'bench', 'admin')}"}
        jobkit_server, jobkit_base = _serve("jobkit_app", env)
        bare_server, bare_base = _serve("bare_app", env)
        connection = redis.Redis.from_url(server.url)
        try:
            jobkit_rates, bare_rates = [], []
            for _ in range(ROUNDS):
                bare_rates.append(_rate(bare_base + "/api/jobs/trigger/email", headers))
                jobkit_rates.append(_rate(jobkit_base + "/api/jobs/trigger/email", headers))
                connection.flushdb()
            jk, bare = statistics.median(jobkit_rates), statistics.median(bare_rates)
            print(
                f"api trigger  POST /api/jobs/trigger/email  jobkit {jk:6.0f}/s   bare Litestar {bare:6.0f}/s   "
                f"ratio {jk / bare:.2f}   (1 uvicorn process each; wrk, {CONCURRENCY} connections)"
            )
            connection.flushdb()
            fill = connection.register_script(_FILL)
            data = b'{"queue_name":"default","actor_name":"email:send","args":[],"kwargs":{},"options":{},' \
                b'"message_id":"x","message_timestamp":%d}' % int(time.time() * 1000)  # fmt: skip
            for offset in range(0, 1_000_000, 100_000):
                fill(keys=["apibench"], args=["default", 100_000, offset, data])
            times = []
            with httpx.Client(headers=headers, timeout=10) as client:
                for _ in range(500):
                    started = time.perf_counter()
                    response = client.get(jobkit_base + "/api/jobs/stats")
                    times.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, response.text
            pending = sum(q["pending"] for q in response.json()["queues"])
            times.sort()
            print(
                f"api stats    GET /api/jobs/stats with {pending:,} pending   p50 {times[len(times) // 2]:.1f} ms   "
                f"p99 {times[int(len(times) * 0.99) - 1]:.1f} ms   (500 sequential requests over HTTP)"
            )
        finally:
            for process in (jobkit_server, bare_server):
                process.terminate()
                process.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
