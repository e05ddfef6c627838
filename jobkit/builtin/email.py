"""email:* tasks: a general message, the verification mail and the password-reset mail (see
:mod:`jobkit.builtin.mail`).

A message that can never be sent (bad address, a header with a line break, a recipient the server refuses for good)
raises :class:`~jobkit.SkipRetry`; a mail server that is down or busy raises, so the task's retry policy applies.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from email.message import EmailMessage
from importlib.resources import files
from string import Template
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from jobkit.builtin.mail import build_message, header_problem, mailer_for
from jobkit.config.settings import Settings
from jobkit.errors import BadMessage, PayloadError, SkipRetry
from jobkit.services.client import Client, needs_client

__all__ = ["build_link", "send_email", "send_password_reset_email", "send_verification_email"]

log = logging.getLogger("jobkit.mail")


def headers_in(*fields: str) -> Callable[[dict[str, Any]], None]:
    """A dispatch-time check: none of ``fields`` (the ones that become mail headers) breaks a header line."""

    def validate(payload: dict[str, Any]) -> None:
        for field in fields:
            if problem := header_problem(field, payload.get(field)):
                raise PayloadError(problem)

    return validate


VERIFY_PATH = "/verify-email"
RESET_PATH = "/reset-password"


@needs_client(validate=headers_in("to", "subject"))
def send_email(
    client: Client, to: str, subject: str, body: str, data: dict[str, Any] | None = None, html: str | None = None
) -> None:
    """Send ``body`` (plain text) with an HTML alternative: ``html`` if given, else the text as HTML.

    ``$name`` placeholders in the subject, body and html are filled from ``data`` (values HTML-escaped in the
    html part); a ``$`` with no matching key stays as it is.
    """
    values = _template_values(data)
    text = Template(_text("body", body)).safe_substitute(values)
    html_body = None
    if html is not None:
        html_body = Template(_text("html", html)).safe_substitute(_escaped(values))
    _deliver(
        client.settings,
        lambda mail_from: build_message(
            mail_from=mail_from,
            to=to,
            subject=Template(_text("subject", subject)).safe_substitute(values),
            text=text,
            html_body=html_body,
        ),
    )


@needs_client(sensitive=("token",), validate=headers_in("to", "name"))
def send_verification_email(client: Client, to: str, name: str, token: str, base_url: str) -> None:
    """The "verify your email address" mail, linking to ``<base_url>/verify-email?token=<token>``."""
    link = build_link(base_url, VERIFY_PATH, token)
    _send_template(client.settings, to, name, "verification", "Verify your email address", link)


@needs_client(sensitive=("token",), validate=headers_in("to", "name"))
def send_password_reset_email(client: Client, to: str, name: str, token: str, base_url: str) -> None:
    """The "reset your password" mail, linking to ``<base_url>/reset-password?token=<token>``."""
    link = build_link(base_url, RESET_PATH, token)
    _send_template(client.settings, to, name, "password_reset", "Reset your password", link)


def build_link(base_url: str, path: str, token: str) -> str:
    """``base_url`` + ``path`` with the token as a query parameter (URL-encoded)."""
    if not isinstance(token, str) or not token.strip():
        raise SkipRetry(f"token: expected a non-empty string, found {token!r}")
    parts = urlsplit(base_url.strip() if isinstance(base_url, str) else "")
    unsafe = any(char in str(base_url) for char in "\r\n\"'<> ")
    if parts.scheme not in ("http", "https") or not parts.netloc or unsafe:
        raise SkipRetry(f"base_url: expected an http(s) URL like https://example.com, found {base_url!r}")
    query = urlencode({"token": token})
    return urlunsplit(
        (
            parts.scheme,
            parts.netloc,
            parts.path.rstrip("/") + path,
            f"{parts.query}&{query}" if parts.query else query,
            "",
        )
    )


def _send_template(settings: Settings, to: str, name: str, template: str, subject: str, link: str) -> None:
    name = _text("name", name).strip()
    greeting = name or "there"
    folder = files("jobkit.builtin") / "templates"
    text = Template((folder / f"{template}.txt").read_text(encoding="utf-8")).substitute(name=greeting, link=link)
    page = Template((folder / f"{template}.html").read_text(encoding="utf-8"))
    html_body = page.substitute(name=html.escape(greeting), link=html.escape(link))
    _deliver(
        settings,
        lambda mail_from: build_message(
            mail_from=mail_from, to=to, subject=subject, text=text, html_body=html_body, to_name=name
        ),
    )


def _deliver(settings: Settings, build: Callable[[str], EmailMessage]) -> None:
    try:
        message = build(settings.mail_from)
        where = mailer_for(settings).send(message)
    except BadMessage as exc:
        raise SkipRetry(str(exc)) from None
    log.info("mail %s delivered to %s", message["Message-ID"], where)


def _text(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise SkipRetry(f"{field}: expected text, found {type(value).__name__}")
    return value


def _template_values(data: object) -> dict[str, str]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SkipRetry(f"data: expected a mapping of placeholder values, found {type(data).__name__}")
    return {str(key): "" if value is None else str(value) for key, value in data.items()}


def _escaped(values: dict[str, str]) -> dict[str, str]:
    return {key: html.escape(value) for key, value in values.items()}
