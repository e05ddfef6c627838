"""What the browser tests share: the stack they drive, the page's console, screen sizes and screenshots."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from playwright.sync_api import Page, ViewportSize

from jobkit.services.client import Client
from jobkit.services.events import Events
from tests.support import ROOT

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
LAPTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}

# The queues of the repository's jobs.yaml, with tasks whose handlers the tests control.


@dataclass
class Stack:
    url: str
    client: Client
    admin_token: str
    viewer_token: str
    user_token: str
    redis: redis.Redis
    namespace: str
    events: Events
    """The app's live-update hub (a test may end every open stream)."""

    def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=5, **kwargs)


@dataclass
class Console:
    """Console errors and uncaught exceptions of one page; the tests allow only the ones they expect."""

    problems: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [p for p in self.problems if not any(a.search(p) for a in self.allowed)]


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot under artifacts/dashboard/ (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
