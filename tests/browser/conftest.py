"""Browser tests: the real app (uvicorn on 127.0.0.1), a real Redis and a real worker, driven through Chromium."""

from __future__ import annotations

import secrets
import socket
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
import redis
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, expect, sync_playwright

from jobkit.api.app import create_app
from jobkit.bootstrap import build_broker
from jobkit.config.jobs_file import load_project
from jobkit.config.settings import Settings
from jobkit.services.auth import mint_token
from jobkit.services.client import Client
from jobkit.store.embedded import EmbeddedRedis
from tests.support import wait_for
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, LAPTOP, Console, Stack
from tests.support.projects import DASHBOARD_JOBS


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest, redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The Litestar app served by uvicorn on 127.0.0.1, one in-process Dramatiq worker, one key namespace. A test
    module's ``WORKER_QUEUES`` (a set of queue names) limits the queues the worker consumes."""
    directory = tmp_path_factory.mktemp("dashboard")
    jobs = directory / "jobs.yaml"
    jobs.write_text(textwrap.dedent(DASHBOARD_JOBS).lstrip())
    namespace = f"d{uuid.uuid4().hex[:10]}"
    settings = Settings(redis_url=redis_server.url, namespace=namespace, data_dir=directory / "var", jobs_path=jobs)
    project = load_project(jobs)
    broker = build_broker(settings, project)
    broker.emit_after("process_boot")
    client = Client(settings, project, broker)
    secret = secrets.token_urlsafe(48)
    app = create_app(client=client, secret=secret)
    worker_queues = getattr(request.module, "WORKER_QUEUES", None)
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100, queues=worker_queues)
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
        viewer_token=mint_token(secret, "vic", "viewer"),
        user_token=mint_token(secret, "uma", "user"),
        redis=connection,
        namespace=namespace,
        events=app.state.services.events,
    )
    app.state.services.events.disconnect_all()
    server.should_exit = True
    thread.join(10)
    worker.stop(timeout=5_000)
    broker.close()
    keys = list(connection.scan_iter(f"{namespace}*", count=1000))
    if keys:
        connection.delete(*keys)
    connection.close()


# A busy CI machine (two cores, Redis, a worker and the browser) can take more than Playwright's default 5 s to
# repaint after a poll: waiting longer costs nothing when the page is quick.
expect.set_options(timeout=15_000)


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
