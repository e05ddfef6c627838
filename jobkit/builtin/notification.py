"""notification:send: deliver a message to a channel: ``webhook`` (signed JSON POST), ``email`` or ``log``.

Webhooks: the body is JSON; with ``WEBHOOK_SECRET`` set, ``X-Jobkit-Signature: sha256=<hex>`` is the HMAC-SHA256 of
``<X-Jobkit-Timestamp>.<body>`` under that secret (a receiver recomputes it and checks the timestamp is recent). A
5xx answer, 408, 429, a timeout or a connection error retries; any other 4xx (or a redirect, not followed) is
permanent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from jobkit.builtin.email import headers_in, send_email
from jobkit.errors import SkipRetry, WebhookUnavailable
from jobkit.services.client import Client, needs_client

__all__ = ["WebhookUnavailable", "send_notification", "sign"]

log = logging.getLogger("jobkit.notification")

CHANNELS = ("webhook", "email", "log")
WEBHOOK_TIMEOUT_S = 10.0
SIGNATURE_HEADER = "X-Jobkit-Signature"
TIMESTAMP_HEADER = "X-Jobkit-Timestamp"
_RETRY_STATUSES = {408, 425, 429}


@needs_client(sensitive=("url.query",), validate=headers_in("to", "title"))
def send_notification(
    client: Client,
    channel: str,
    message: str,
    title: str | None = None,
    to: str | None = None,
    url: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Send ``message`` (with an optional ``title`` and ``data``) to ``url`` (webhook), ``to`` (email) or the log."""
    if not isinstance(message, str):
        raise SkipRetry(f"message: expected text, found {type(message).__name__}")
    if data is not None and not isinstance(data, dict):
        raise SkipRetry(f"data: expected a mapping, found {type(data).__name__}")
    if channel == "webhook":
        _webhook(
            client.settings.webhook_secret,
            url,
            {"title": title, "message": message, "data": data or {}, "sent_at": int(time.time())},
        )
    elif channel == "email":
        if to is None:
            raise SkipRetry("to: the email channel needs an address")
        send_email(client, to, title or "Notification", message)
    elif channel == "log":
        log.info("notification: %s%s", f"{title}: " if title else "", message)
    else:
        raise SkipRetry(f"channel: expected one of {', '.join(CHANNELS)}, found {channel!r}")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _check_url(url: object) -> str:
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        valid = parts is not None and parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number
        valid = False
    if not valid or not isinstance(url, str):
        raise SkipRetry(f"url: the webhook channel needs an http(s) URL like https://example.com/hook, found {url!r}")
    return url


def _webhook(secret: str | None, raw_url: object, payload: dict[str, Any]) -> None:
    url = _check_url(raw_url)
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "User-Agent": "jobkit-webhook", TIMESTAMP_HEADER: timestamp}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    where = _redacted(url)
    try:
        with _opener.open(request, timeout=WEBHOOK_TIMEOUT_S) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
        if status >= 500 or status in _RETRY_STATUSES:
            raise WebhookUnavailable(f"webhook {where} answered {status}; will retry") from None
        raise SkipRetry(
            f"webhook {where} answered {status} {exc.reason} (not retried: fix the URL or receiver)"
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WebhookUnavailable(f"cannot reach webhook {where}: {reason}") from None
    log.info("notification delivered to webhook %s (%d)", where, status)


def _redacted(url: str) -> str:
    """The URL without credentials or query (which may carry a token), for logs and errors."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"
