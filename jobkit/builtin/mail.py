"""Building and sending mail: multipart text + HTML messages, written as .eml files, sent by SMTP or through a
provider's HTTPS API.

``MAIL_MAILER=file`` (the default) writes each message under ``JOBKIT_DATA_DIR/mail``, so jobkit runs with no mail
server; ``MAIL_MAILER=smtp`` sends through ``SMTP_HOST``; ``MAIL_MAILER=sendgrid`` through SendGrid's API
(:mod:`jobkit.builtin.mail_providers`). Every mailer takes the same :class:`~email.message.EmailMessage`. Errors come
in two kinds: :class:`BadMessage` (the message can never be sent: a bad address, a header with a line break, a
recipient the server refuses for good) and :class:`MailUnavailable` (the server is down or busy: worth a retry).
"""

from __future__ import annotations

import html
import os
import re
import smtplib
import ssl
import tempfile
import uuid
from collections.abc import Callable
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Protocol

from jobkit.builtin.mail_providers.sendgrid import SendGridMailer
from jobkit.config.addresses import check_address
from jobkit.config.settings import MailMailer, Settings
from jobkit.errors import BadMessage, MailUnavailable
from jobkit.store.files import private_directory

__all__ = [
    "BadMessage",
    "FileMailer",
    "MailUnavailable",
    "Mailer",
    "SendGridMailer",
    "SmtpMailer",
    "build_message",
    "check_address",
    "header_problem",
    "mailer_for",
    "text_to_html",
]

SMTP_TIMEOUT_S = 30.0


#: Characters no mail header may carry: a line break would start a header of the sender's choosing.
HEADER_BREAKERS = ("\r", "\n", "\x00")


def header_problem(field: str, value: object) -> str | None:
    """Why ``value`` cannot go into a mail header, or None."""
    if isinstance(value, str) and any(char in value for char in HEADER_BREAKERS):
        return f"{field}: contains a line break or NUL, which could inject mail headers (use one line of text)"
    return None


def _check_header(field: str, value: str) -> str:
    if problem := header_problem(field, value):
        raise BadMessage(problem)
    return value


def _sender(mail_from: str) -> Address:
    name, address = parseaddr(mail_from)
    local, _, domain = check_address(address, "MAIL_FROM").rpartition("@")
    return Address(display_name=_check_header("MAIL_FROM", name), username=local, domain=domain)


def text_to_html(text: str) -> str:
    """Plain text as a small HTML document: escaped, paragraphs on blank lines, line breaks kept."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p]
    body = "\n".join("<p>" + html.escape(p).replace("\n", "<br>\n") + "</p>" for p in paragraphs)
    return f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body>\n{body}\n</body></html>\n'


def build_message(
    *, mail_from: str, to: str, subject: str, text: str, html_body: str | None = None, to_name: str = ""
) -> EmailMessage:
    """A multipart/alternative message (text, then HTML); the HTML part is made from the text when not given."""
    recipient = check_address(to, "to")
    local, _, domain = recipient.rpartition("@")
    message = EmailMessage()
    message["From"] = _sender(mail_from)
    message["To"] = Address(display_name=_check_header("name", to_name), username=local, domain=domain)
    message["Subject"] = _check_header("subject", subject)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=domain_of(mail_from))
    message.set_content(text)
    message.add_alternative(html_body if html_body is not None else text_to_html(text), subtype="html")
    return message


def domain_of(mail_from: str) -> str:
    return parseaddr(mail_from)[1].rpartition("@")[2] or "jobkit.local"


class Mailer(Protocol):
    """What every way of sending mail offers. A mailer raises :class:`BadMessage` for a message it can never send and
    :class:`MailUnavailable` (with ``retry_after`` when the server said when) for one worth another attempt."""

    def send(self, message: EmailMessage) -> str:
        """Deliver ``message``; returns where it went (a path, ``smtp://host:port``, a provider's URL), for the log."""


class FileMailer:
    """Writes each message as ``<directory>/<timestamp>-<id>.eml``, atomically (temp file, then rename)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, message: EmailMessage) -> str:
        private_directory(self.directory)
        target = self.directory / f"{uuid.uuid4().hex}.eml"
        handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".eml")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(bytes(message))
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return str(target)


class SmtpMailer:
    """Sends through an SMTP server: STARTTLS, TLS from the start, or plain; logs in when a username is set."""

    def __init__(self, settings: Settings, timeout: float = SMTP_TIMEOUT_S) -> None:
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.tls = settings.smtp_tls
        self.username = settings.smtp_username
        self._password = settings.smtp_password or ""
        self.timeout = timeout

    @property
    def where(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def send(self, message: EmailMessage) -> str:
        try:
            with self._connect() as smtp:
                if self.username:
                    smtp.login(self.username, self._password)
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            detail = "; ".join(
                f"{to}: {code} {reply.decode(errors='replace')}" for to, (code, reply) in exc.recipients.items()
            )
            if all(500 <= code < 600 for code in codes):
                raise BadMessage(f"{self.where} refused the recipient: {detail}") from None
            raise MailUnavailable(f"{self.where} deferred the recipient: {detail}") from None
        except smtplib.SMTPAuthenticationError as exc:
            # Not the message's fault: fixing SMTP_USERNAME/SMTP_PASSWORD makes the retry succeed.
            raise MailUnavailable(
                f"{self.where} refused the login of {self.username!r} ({exc.smtp_code}): check SMTP_USERNAME and "
                "SMTP_PASSWORD"
            ) from None
        except smtplib.SMTPResponseException as exc:
            reply = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            about_the_message = isinstance(exc, smtplib.SMTPDataError | smtplib.SMTPSenderRefused)
            if about_the_message and 500 <= exc.smtp_code < 600:
                raise BadMessage(f"{self.where} rejected the message: {exc.smtp_code} {reply}") from None
            raise MailUnavailable(f"{self.where} answered {exc.smtp_code} {reply}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise MailUnavailable(
                f"cannot reach the SMTP server at {self.where}: {exc or type(exc).__name__} "
                "(check SMTP_HOST, SMTP_PORT and SMTP_TLS)"
            ) from None
        return self.where

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        if self.tls == "tls":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.tls == "starttls":
            try:
                smtp.starttls(context=context)
            except BaseException:
                smtp.close()
                raise
        return smtp


def _file_mailer(settings: Settings) -> Mailer:
    return FileMailer(settings.data_dir / "mail")


#: ``MAIL_MAILER`` -> how to build that mailer from the settings (a new provider adds its line here).
MAILERS: dict[MailMailer, Callable[[Settings], Mailer]] = {
    "file": _file_mailer,
    "smtp": SmtpMailer,
    "sendgrid": SendGridMailer,
}


def mailer_for(settings: Settings) -> Mailer:
    """The mailer ``MAIL_MAILER`` names."""
    return MAILERS[settings.mail_mailer](settings)
