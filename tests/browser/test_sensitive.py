"""A password-reset token, end to end: the handler gets it, and nothing else ever shows or stores it in clear.

After ``jobs.send_password_reset_email(..., token=T)`` fails (the mail server is down), is archived, alerts, is
reported and is retried until the mail goes out, T is searched for in: every GET of the API for every role, the
dashboard's pages in Chromium, the CLI's output, every log line of the worker process and of this one (API, CLI),
the alert webhook's bodies, the report files, the embedded Redis's append-only file and a DUMP of every key.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import redis
import uvicorn
from playwright.sync_api import Browser, expect

from jobkit import jobs
from jobkit.api import create_app
from jobkit.bootstrap import open_client
from jobkit.cli import main
from jobkit.config.jobs_file import load_project
from jobkit.config.settings import Settings
from jobkit.facade import set_client
from jobkit.services.auth import mint_token
from jobkit.services.queues import Queues
from jobkit.store.embedded import EmbeddedRedis
from tests.support import ROOT, start, wait_for
from tests.support.smtp import SmtpServer
from tests.support.webhook import webhook_receiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SECRET = "sensitive-test-secret-" + "z" * 30
JOBS = """
queues: {{critical: {{weight: 6}}, default: {{weight: 3}}, low: {{weight: 1}}}}
defaults: {{queue: default, max_retries: 1, backoff: {{min: 100ms, max: 200ms}}, timeout: 20s}}
tasks:
  email:password_reset: {{handler: "jobkit.builtin.email:send_password_reset_email", queue: critical}}
  notification:send: {{handler: "jobkit.builtin.notification:send_notification"}}
  report:generate: {{handler: "jobkit.builtin.report:generate_report"}}
alerts:
  dead: {{when: archived, queues: [critical], channels: [{{webhook: "{url}"}}, log], cooldown: 1s}}
"""
GET_ROUTES = [
    "/api/jobs/stats", "/api/jobs/queue/critical", "/api/jobs/history?days=2", "/api/jobs/schedules",
    "/api/system/workers", "/api/system/redis", "/api/jobs/limits/email:password_reset", "/metrics", "/health",
]  # fmt: skip
STATES = ["pending", "active", "scheduled", "retry", "archived", "completed"]


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("mail.log"):  # the test's own SMTP server logs the mail it receives
            self.lines.append(self.format(record))


@pytest.fixture
def captured() -> Iterator[Captured]:
    handler = Captured()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_a_reset_token_reaches_the_handler_and_nothing_else(
    tmp_path: Path,
    browser: Browser,
    captured: Captured,
    processes: list[subprocess.Popen[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = f"reset-{uuid.uuid4().hex}"
    smtp = SmtpServer()  # down at first: the mail fails and retries, then is archived
    with webhook_receiver("/hook") as receiver, EmbeddedRedis(tmp_path / "redis", appendonly=True) as server:
        jobs_yaml = tmp_path / "jobs.yaml"
        jobs_yaml.write_text(textwrap.dedent(JOBS.format(url=receiver.url)).lstrip())
        environment = {
            "REDIS_URL": server.url, "JOBKIT_NAMESPACE": "s", "JOBKIT_JOBS": str(jobs_yaml),
            "JOBKIT_DATA_DIR": str(tmp_path / "var"), "JOBKIT_SECRET": SECRET, "MAIL_MAILER": "smtp",
            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port), "SMTP_TLS": "none",
            "MAIL_FROM": "noreply@example.com", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
        }  # fmt: skip
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        settings = Settings.from_env(dotenv=None)
        client = open_client(settings, load_project(jobs_yaml))
        set_client(client)
        worker_log = tmp_path / "worker.log"
        argv = [sys.executable, "-m", "dramatiq", "jobkit.actors", "-p", "1", "-t", "2", "-v"]
        start(processes, argv, dict(os.environ), ROOT, worker_log)
        queues = Queues(client)

        # When the reset mail is sent while the mail server is down: it fails, retries, is archived, alerts
        ref = jobs.send_password_reset_email("ann@example.com", "Ann", token, "https://app.example.com")
        wait_for(lambda: queues.stats("critical").archived == 1, timeout=30, what="the reset mail archived")
        wait_for(lambda: receiver.requests, timeout=30, what="the dead-task alert")
        client.dispatch("report:generate", period="day")
        wait_for(lambda: list((tmp_path / "var" / "reports").glob("*.csv")), timeout=30, what="the report")

        # And, the mail server up, an operator retries it and the mail goes out with the link
        smtp.start()
        try:
            assert main(["retry", "critical", ref.id]) == 0
            wait_for(lambda: smtp.inbox.messages, timeout=30, what="the mail")
            mail = smtp.inbox.messages[0].content
            assert isinstance(mail, bytes) and token.encode() in mail.replace(b"=\r\n", b"")  # the handler had T
            wait_for(lambda: queues.stats("critical").completed == 1, timeout=10, what="the task completed")

            # Then no API answer, for any role, carries T
            app = create_app(client=client, secret=SECRET)
            port = _port()
            api = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
            threading.Thread(target=api.run, daemon=True).start()
            wait_for(lambda: api.started, timeout=10, what="the API")

            answers: list[str] = []
            for role in ("admin", "viewer", "user"):
                auth = {"Authorization": f"Bearer {mint_token(SECRET, '1', role, timedelta(minutes=5))}"}
                urls = [*GET_ROUTES, f"/api/jobs/task/critical/{ref.id}"]
                urls += [f"/api/jobs/queue/critical/tasks?state={state}" for state in STATES]
                for url in urls:
                    answers.append(httpx.get(f"http://127.0.0.1:{port}{url}", headers=auth, timeout=5).text)
            task = httpx.get(
                f"http://127.0.0.1:{port}/api/jobs/task/critical/{ref.id}",
                headers={"Authorization": f"Bearer {mint_token(SECRET, 'ops', 'admin', timedelta(minutes=5))}"},
            ).json()
            assert task["payload"]["token"] == "***" and task["payload"]["name"] == "Ann"

            # And no dashboard page shows it
            admin = mint_token(SECRET, "ops", "admin", timedelta(minutes=5))
            context = browser.new_context(base_url=f"http://127.0.0.1:{port}")
            page = context.new_page()
            page.goto(f"/dashboard#token={admin}")
            expect(page.locator("#queues")).to_be_visible()
            pages = [page.content()]
            page.goto(f"/dashboard#/task/critical/{ref.id}")
            expect(page.locator("#view h1", has_text="Task")).to_be_visible()
            expect(page.locator("#view")).to_contain_text("***")
            pages.append(page.content())
            for state in ("archived", "completed"):
                page.goto(f"/dashboard#/queue/critical?state={state}")
                expect(page.locator("#view")).to_contain_text("critical")
                pages.append(page.content())
            context.close()
            api.should_exit = True

            # And no CLI output
            assert main(["task", "critical", ref.id]) == 0
            assert main(["tasks", "critical", "--state", "completed", "--json"]) == 0
            cli = capsys.readouterr()
        finally:
            smtp.stop()
        for process in processes:
            process.terminate()
            process.wait(20)

        # And not the alert, the report, any log line, the AOF, nor any key's DUMP
        alerts = [body.decode() for body in receiver.bodies]
        assert alerts and "archived" in alerts[0]
        reports = [path.read_text() for path in (tmp_path / "var" / "reports").iterdir()]
        logs = [worker_log.read_text(), *captured.lines]
        assert "Failed to process message email:password_reset(" in logs[0]  # Dramatiq's own line, masked
        raw = redis.Redis.from_url(server.url)
        dumps = [raw.dump(key) or b"" for key in raw.scan_iter("*")]
        assert len(dumps) > 5
        aof_file = tmp_path / "redis" / "appendonly.aof"
        wait_for(lambda: b"report:generate" in aof_file.read_bytes(), what="the AOF to be written")  # fsync: 1 s
        aof = aof_file.read_bytes()

    places = {"api": answers, "dashboard": pages, "cli": [cli.out, cli.err], "alerts": alerts, "reports": reports}
    places["logs"] = logs
    leaks = {name: [text[:200] for text in texts if token in text] for name, texts in places.items()}
    assert leaks == {name: [] for name in places}
    assert not [dump for dump in dumps if token.encode() in dump]
    assert token.encode() not in aof and b"ann@example.com" in aof  # the AOF is there, and holds the task
    json.dumps(task)  # the answer was JSON
