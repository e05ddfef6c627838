"""Browser tests: the real app (uvicorn on 127.0.0.1), a real Redis and a real worker, driven through Chromium."""

from __future__ import annotations

import os
import re
import secrets
import socket
import textwrap
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import pytest
import redis
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from jobkit.api.app import create_app
from jobkit.auth import mint_token
from jobkit.client import Client
from jobkit.loader import load_project
from jobkit.redis_server import EmbeddedRedis
from jobkit.runtime import build_broker
from jobkit.settings import Settings
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "dashboard"
CHROMIUM = os.environ.get("JOBKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

# The queues of the repository's jobs.yaml, with tasks whose handlers the tests control.
JOBS = """
queues:
  critical: {weight: 6}
  default: {weight: 3}
  low: {weight: 1}
defaults:
  queue: default
  max_retries: 3
  backoff: {min: 100ms, max: 400ms}
  timeout: 10s
  retention: 1h
tasks:
  dash:fragile: {handler: "tests.dashboard.handlers:fragile", max_retries: 0}
  dash:greet: {handler: "tests.dashboard.handlers:greet"}
  dash:urgent: {handler: "tests.dashboard.handlers:greet", queue: critical}
  dash:later: {handler: "tests.dashboard.handlers:greet", queue: low}
  dash:echo: {handler: "tests.dashboard.handlers:echo"}
  dash:limited: {handler: "tests.dashboard.handlers:echo", rate_limit: 50/s, concurrency: 2}
workflows:
  dash:flow:
    api: true
    steps:
      - task: dash:echo
        payload: {value: "{{ input.n }}"}
      - group:
          - {task: dash:echo, payload: {value: "{{ prev }}"}}
          - {task: dash:limited, payload: {value: "{{ prev }}"}}
"""


@dataclass
class Stack:
    url: str
    client: Client
    admin_token: str
    user_token: str
    redis: redis.Redis
    namespace: str

    def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=5, **kwargs)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def stack(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The Litestar app served by uvicorn on 127.0.0.1, one in-process Dramatiq worker, one key namespace."""
    directory = tmp_path_factory.mktemp("dashboard")
    jobs = directory / "jobs.yaml"
    jobs.write_text(textwrap.dedent(JOBS).lstrip())
    namespace = f"d{uuid.uuid4().hex[:10]}"
    settings = Settings(redis_url=redis_server.url, namespace=namespace, data_dir=directory / "var", jobs_path=jobs)
    project = load_project(jobs)
    broker = build_broker(settings, project)
    broker.emit_after("process_boot")
    client = Client(settings, project, broker)
    secret = secrets.token_urlsafe(48)
    app = create_app(client=client, secret=secret)
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=10, what="uvicorn to start")
    connection = redis.Redis.from_url(redis_server.url)
    yield Stack(
        url=f"http://127.0.0.1:{port}",
        client=client,
        admin_token=mint_token(secret, "ada", "admin"),
        user_token=mint_token(secret, "uma", "user"),
        redis=connection,
        namespace=namespace,
    )
    server.should_exit = True
    thread.join(10)
    worker.stop(timeout=5_000)
    broker.close()
    keys = list(connection.scan_iter(f"{namespace}*", count=1000))
    if keys:
        connection.delete(*keys)
    connection.close()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():  # a missing browser fails the run: `make pytest` installs it
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make chromium` (apt-get install chromium)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@dataclass
class Console:
    """Console errors and uncaught exceptions of one page; the tests allow only the ones they expect."""

    problems: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [p for p in self.problems if not any(a.search(p) for a in self.allowed)]


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(browser: Browser, stack: Stack, console: Console) -> Iterator[Page]:
    context = browser.new_context(viewport=LAPTOP, base_url=stack.url)
    page = context.new_page()
    page.set_default_timeout(10_000)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console.problems.append(f"console: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: console.problems.append(f"page error: {error}"))
    yield page
    context.close()
    assert console.unexpected() == [], "errors in the browser console"


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot under artifacts/dashboard/ (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
