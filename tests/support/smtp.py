"""A real SMTP server on 127.0.0.1 (aiosmtpd) for the mail tests, and settings that send through it."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field, replace
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from jobkit.config.settings import Settings


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
