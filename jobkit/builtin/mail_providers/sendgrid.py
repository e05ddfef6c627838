"""SendGrid's v3 Mail Send API (``POST /v3/mail/send``), for ``MAIL_MAILER=sendgrid``.

The message becomes one personalization (its To, Cc and Bcc), ``from`` and ``reply_to`` with their display names,
``content`` with text/plain first and text/html second (as SendGrid requires), the attachments base64-encoded with
their file names, types and dispositions, and every other header (``Date``, ``Message-ID``, custom ones) under
``headers``. SendGrid answers 202 with an ``X-Message-Id``; its errors are JSON,
``{"errors": [{"message": ..., "field": ...}]}``.
"""

from __future__ import annotations

import base64
import json
from email.header import Header
from email.headerregistry import Address
from typing import Any

import httpx

from jobkit.builtin.mail_providers.http_api import TIMEOUT, HttpApiMailer, MailParts
from jobkit.config.settings import Settings
from jobkit.errors import BadMessage, MailUnavailable

__all__ = ["SendGridMailer"]

# Headers SendGrid refuses to take from the request (it sets them itself).
_RESERVED_HEADERS = frozenset({"x-sg-id", "x-sg-eid", "received", "dkim-signature"})


def _address(address: Address) -> dict[str, str]:
    entry = {"email": address.addr_spec}
    if address.display_name:
        entry["name"] = address.display_name
    return entry


def _header_value(value: str) -> str:
    # SendGrid passes header values through as they are: non-ASCII text must arrive RFC 2047-encoded.
    return value if value.isascii() else Header(value, "utf-8").encode()


class SendGridMailer(HttpApiMailer):
    provider = "SendGrid"
    path = "/v3/mail/send"
    url_setting = "SENDGRID_API_URL"
    key_setting = "SENDGRID_API_KEY"
    ca_setting = "SENDGRID_CA_BUNDLE"

    def __init__(self, settings: Settings, timeout: httpx.Timeout = TIMEOUT) -> None:
        if not settings.sendgrid_api_key:
            # Only a Settings built by hand gets here (the loader refuses it): fixing the setting lets a retry work.
            raise MailUnavailable("MAIL_MAILER=sendgrid but SENDGRID_API_KEY is not set")
        super().__init__(
            settings.sendgrid_api_url,
            settings.sendgrid_api_key,
            ca_bundle=settings.sendgrid_ca_bundle,
            timeout=timeout,
        )

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    def payload(self, parts: MailParts) -> dict[str, Any]:
        if not parts.subject:
            raise BadMessage("subject: SendGrid needs a subject, found an empty one")
        content = [
            {"type": f"text/{subtype}", "value": value}
            for subtype, value in (("plain", parts.text), ("html", parts.html))
            if value  # SendGrid refuses an empty value; the other part still carries the mail
        ]
        if not content:
            raise BadMessage("body: the message has neither text nor HTML to send")
        personalization: dict[str, Any] = {"to": [_address(a) for a in parts.to]}
        if parts.cc:
            personalization["cc"] = [_address(a) for a in parts.cc]
        if parts.bcc:
            personalization["bcc"] = [_address(a) for a in parts.bcc]
        body: dict[str, Any] = {
            "personalizations": [personalization],
            "from": _address(parts.sender),
            "subject": parts.subject,
            "content": content,
        }
        if len(parts.reply_to) == 1:
            body["reply_to"] = _address(parts.reply_to[0])
        elif parts.reply_to:
            body["reply_to_list"] = [_address(a) for a in parts.reply_to]
        if parts.attachments:
            body["attachments"] = [
                {
                    "content": base64.b64encode(attachment.data).decode("ascii"),
                    "filename": attachment.filename,
                    "type": attachment.content_type,
                    "disposition": attachment.disposition,
                    **({"content_id": attachment.content_id} if attachment.content_id else {}),
                }
                for attachment in parts.attachments
            ]
        headers = {
            name: _header_value(value) for name, value in parts.headers.items() if name.lower() not in _RESERVED_HEADERS
        }
        if headers:
            body["headers"] = headers
        return body

    def error_text(self, response: httpx.Response) -> str:
        try:
            errors = response.json().get("errors")
        except (ValueError, AttributeError):  # not JSON, or not an object
            return super().error_text(response)
        if not isinstance(errors, list) or not errors:
            return super().error_text(response)
        said = []
        for error in errors:
            if not isinstance(error, dict):
                said.append(json.dumps(error))
                continue
            message = str(error.get("message") or "").strip() or "(no message)"
            field = error.get("field")
            said.append(f"{field}: {message}" if field else message)
        return "; ".join(said)

    def message_id(self, response: httpx.Response) -> str | None:
        value = response.headers.get("X-Message-Id")
        return str(value) if value else None
