"""email:* tasks. The default ``file`` mailer writes each message as an .eml file under ``JOBKIT_DATA_DIR/mail``."""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from jobkit.errors import SkipRetry
from jobkit.settings import Settings

__all__ = ["send_email"]

_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+")


def _check_header(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise SkipRetry(f"{name} contains a line break (header injection refused)")
    return value


def send_email(to: str, subject: str, body: str, data: dict[str, Any] | None = None) -> str:
    """Send one plain-text email; returns where it went. A bad address is a permanent failure."""
    if not isinstance(to, str) or not _ADDRESS.fullmatch(to.strip()):
        raise SkipRetry(f"invalid email address {to!r}")
    settings = Settings.from_env()
    message = EmailMessage()
    message["From"] = _check_header("MAIL_FROM", os.environ.get("MAIL_FROM", "jobkit@localhost"))
    message["To"] = _check_header("to", to.strip())
    message["Subject"] = _check_header("subject", subject)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="jobkit.local")
    message.set_content(body)
    outbox = settings.data_dir / "mail"
    outbox.mkdir(parents=True, exist_ok=True)
    target = outbox / f"{uuid.uuid4().hex}.eml"
    _write_atomically(target, bytes(message))
    return str(target)


def _write_atomically(target: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
