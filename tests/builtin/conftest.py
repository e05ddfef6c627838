"""Fixtures for the built-in tasks: a project declaring them (fast retries), a SQLite database, an SMTP server."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from jobkit.loader import load_project
from jobkit.model import Project
from jobkit.settings import Settings

BUILTIN_JOBS = """
queues:
  critical: {weight: 6}
  default: {weight: 3}
  low: {weight: 1}
defaults:
  queue: default
  max_retries: 2
  backoff: {min: 100ms, max: 200ms}
  timeout: 20s
tasks:
  email:send: {handler: "jobkit.actors.email:send_email", api: true}
  email:verification: {handler: "jobkit.actors.email:send_verification_email", queue: critical}
  email:password_reset: {handler: "jobkit.actors.email:send_password_reset_email", queue: critical}
  notification:send: {handler: "jobkit.actors.notification:send_notification"}
  export:process: {handler: "jobkit.actors.export:process_export", queue: low}
  cleanup:old_files: {handler: "jobkit.actors.cleanup:cleanup_old_files", queue: low}
exports:
  posts_by_user:
    sql: "SELECT id, title, created_at FROM posts WHERE user_id = :user_id ORDER BY id"
  all_posts:
    sql: "SELECT id, user_id, title, score FROM posts ORDER BY id"
  posts_between:
    sql: "SELECT id, title FROM posts WHERE id BETWEEN :low AND :high ORDER BY id"
"""

POSTS: list[tuple[int, int, str, str, float | None]] = [
    (1, 1, "Hello, world", "2025-01-01 12:00:00", 1.5),
    (2, 1, 'She said "hi"\nand left', "2025-01-02 09:30:00", None),
    (3, 2, '=HYPERLINK("http://evil")', "2025-01-03 16:45:00", -2.0),
    (4, 1, "Ünïcode ✓", "2025-01-04 08:15:00", 0.0),
]


@pytest.fixture
def project(write_yaml: Callable[..., Path]) -> Project:
    return load_project(write_yaml(BUILTIN_JOBS))


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute(
            "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER, title TEXT, created_at TEXT, score REAL)"
        )
        connection.executemany("INSERT INTO posts VALUES (?, ?, ?, ?, ?)", POSTS)
    return path


@pytest.fixture
def settings(settings: Settings, database: Path) -> Settings:
    return replace(settings, database_url=f"sqlite:///{database}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps what it receives and refuses the recipients listed in ``refuse`` (550)."""

    messages: list[Envelope] = field(default_factory=list)
    recipients_tried: list[str] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.recipients_tried.append(address)
        if address in self.refuse:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


class SmtpServer:
    """A real SMTP server on 127.0.0.1 that can be started late (to play a server that was down)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.inbox = Inbox()
        self.controller: Controller | None = None
        self.logins: dict[str, str] = {}
        """username -> password; when set, the server offers AUTH (over plain text: a test server only)."""

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and self.logins.get(data.login.decode()) == data.password.decode()
        return AuthResult(success=ok)

    def start(self) -> SmtpServer:
        options: dict[str, Any] = {}
        if self.logins:
            options = {"authenticator": self.authenticate, "auth_require_tls": False}
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, ready_timeout=5, **options)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    yield server
    server.stop()


def smtp_settings(settings: Settings, server: SmtpServer, **overrides: Any) -> Settings:
    return replace(
        settings,
        mail_mailer="smtp",
        smtp_host="127.0.0.1",
        smtp_port=server.port,
        smtp_tls="none",
        mail_from="Jobkit <noreply@example.com>",
        **overrides,
    )
