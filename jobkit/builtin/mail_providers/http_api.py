"""What every HTTPS mail API shares: the message taken apart (:func:`parts_of`), and :class:`HttpApiMailer`, which
makes the call and sorts the answers.

The answers, the same for every provider:

- 2xx: delivered.
- 408, 429 or 5xx, a timeout, a connection or TLS error: :class:`MailUnavailable`, so the task's retry policy
  applies; a ``Retry-After`` on the answer goes with it (``retry_after``), and the retry middleware schedules the next
  attempt no earlier than that. The wait is not spent here, on purpose: a worker thread sleeping through a
  provider's rate limit would hold up every other task, and the task's ``timeout`` would count the sleep.
- any other 4xx: :class:`BadMessage` with the provider's own error text (the message, or the key, is refused and
  sending it again will not help), which the mail tasks turn into an archived task.
- a redirect (never followed: the key would travel with it) or anything else: :class:`MailUnavailable`.

The API key is kept off everything a person can see: it is sent in a header only, and taken out of any text an
error carries (a provider that echoes it back).
"""

from __future__ import annotations

import ssl
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx

from jobkit.errors import BadMessage, MailUnavailable

__all__ = ["TIMEOUT", "Attachment", "HttpApiMailer", "MailParts", "parse_retry_after", "parts_of"]

#: Connecting may take 10 s, the whole call 30 s (a large attachment on a slow link), like the SMTP mailer's 30 s.
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
#: A ``Retry-After`` longer than this is cut to it: a provider's rate-limit window is minutes, and an hour of silence
#: is better spent on a fresh attempt that may get a fresh answer.
MAX_RETRY_AFTER = timedelta(hours=1)
_RETRY_STATUSES = frozenset({408, 429})
_MAX_ERROR_CHARS = 1000
# Headers every provider takes as fields of its own (addresses, subject) or builds itself (the MIME structure).
_STRUCTURAL_HEADERS = frozenset(
    name.lower()
    for name in (
        "From", "To", "Cc", "Bcc", "Reply-To", "Subject", "MIME-Version",
        "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Content-ID",
    )
)  # fmt: skip


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes
    disposition: str = "attachment"
    """``attachment`` or ``inline``."""
    content_id: str | None = None
    """For an inline part: the id the HTML refers to as ``cid:<id>`` (without the angle brackets)."""


@dataclass(frozen=True)
class MailParts:
    """An :class:`~email.message.EmailMessage` as the fields a JSON mail API asks for."""

    sender: Address
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    bcc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    subject: str
    text: str | None
    html: str | None
    attachments: tuple[Attachment, ...]
    headers: dict[str, str]
    """Every other header (``Date``, ``Message-ID``, custom ones), decoded, in the message's order."""


def _addresses(message: EmailMessage, name: str) -> tuple[Address, ...]:
    # Under the message's (default) policy an address header is parsed already, display names decoded.
    return tuple(address for header in message.get_all(name, []) for address in header.addresses)


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body((subtype,))
    if part is None or part.get_content_type() != f"text/{subtype}":
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None


def parts_of(message: EmailMessage) -> MailParts:
    """``message`` taken apart; :class:`BadMessage` when it has no sender or no recipient."""
    senders = _addresses(message, "From")
    if len(senders) != 1:
        raise BadMessage(f"From: expected one sender address, found {len(senders)}")
    to, cc, bcc = (_addresses(message, name) for name in ("To", "Cc", "Bcc"))
    if not to:
        raise BadMessage("To: the message has no recipient")
    attachments = []
    for number, part in enumerate(message.iter_attachments(), start=1):
        payload = part.get_payload(decode=True)
        content_id = part.get("Content-ID")
        attachments.append(
            Attachment(
                filename=part.get_filename() or f"attachment-{number}",
                content_type=part.get_content_type(),
                data=payload if isinstance(payload, bytes) else b"",
                disposition="inline" if part.get_content_disposition() == "inline" else "attachment",
                content_id=str(content_id).strip().strip("<>") if content_id else None,
            )
        )
    headers = {
        name: str(value) for name, value in message.items() if name.lower() not in _STRUCTURAL_HEADERS
    }  # the last of a repeated header wins: JSON APIs take one value per name
    return MailParts(
        sender=senders[0],
        to=to,
        cc=cc,
        bcc=bcc,
        reply_to=_addresses(message, "Reply-To"),
        subject=str(message.get("Subject", "")),
        text=_body(message, "plain"),
        html=_body(message, "html"),
        attachments=tuple(attachments),
        headers=headers,
    )


def parse_retry_after(value: str | None, now: datetime | None = None) -> timedelta | None:
    """A ``Retry-After`` value (seconds, or an HTTP date) as a wait of at most :data:`MAX_RETRY_AFTER`; None when
    it is missing or unreadable."""
    text = (value or "").strip()
    if not text:
        return None
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(timedelta(seconds=max(seconds, 0.0)), MAX_RETRY_AFTER)


class HttpApiMailer(ABC):
    """Sends each message with one HTTPS POST of JSON to ``<base_url><path>``.

    A provider subclass sets :attr:`provider`, :attr:`path` and the names of its settings (for the hints), and
    writes :meth:`payload`, :meth:`auth_headers` and :meth:`error_text`.
    """

    provider: ClassVar[str]
    """How errors and logs name the service: ``SendGrid``."""
    path: ClassVar[str]
    """The send endpoint under the base URL: ``/v3/mail/send``."""
    url_setting: ClassVar[str]
    """The variable that holds the base URL (named in hints): ``SENDGRID_API_URL``."""
    key_setting: ClassVar[str]
    """The variable that holds the key (named in hints, never its value): ``SENDGRID_API_KEY``."""
    ca_setting: ClassVar[str]
    """The variable that holds the CA bundle (named in hints): ``SENDGRID_CA_BUNDLE``."""

    def __init__(
        self, base_url: str, api_key: str, *, ca_bundle: Path | None = None, timeout: httpx.Timeout = TIMEOUT
    ) -> None:
        self.url = base_url.rstrip("/") + self.path
        self._api_key = api_key
        self.timeout = timeout
        # A CA bundle replaces the default trust for this mailer only; verification is never turned off.
        self._verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    @property
    def where(self) -> str:
        return f"{self.provider} at {self.url}"

    @abstractmethod
    def payload(self, parts: MailParts) -> dict[str, Any]:
        """The request's JSON for one message; :class:`BadMessage` when the provider cannot take it."""

    @abstractmethod
    def auth_headers(self, api_key: str) -> dict[str, str]:
        """The headers that carry the key."""

    def error_text(self, response: httpx.Response) -> str:
        """What the provider said was wrong; by default the body as text."""
        return response.text.strip()

    def message_id(self, response: httpx.Response) -> str | None:
        """The provider's id of an accepted message, for the log; None when it gives none."""
        return None

    def send(self, message: EmailMessage) -> str:
        body = self.payload(parts_of(message))
        headers = {"Accept": "application/json", "User-Agent": "jobkit-mail", **self.auth_headers(self._api_key)}
        try:
            with httpx.Client(verify=self._verify, timeout=self.timeout, follow_redirects=False) as client:
                response = client.post(self.url, json=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise MailUnavailable(f"{self.where} did not answer in time ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise MailUnavailable(
                f"cannot reach {self.where}: {self._redacted(str(exc)) or type(exc).__name__} "
                f"(check {self.url_setting}, and {self.ca_setting} if a proxy inspects TLS)"
            ) from None
        return self._outcome(response)

    def _outcome(self, response: httpx.Response) -> str:
        status = response.status_code
        if 200 <= status < 300:
            message_id = self.message_id(response)
            return f"{self.where} (message id {message_id})" if message_id else self.where
        answer = f"{self.where} answered {status} {response.reason_phrase}".rstrip()
        said = self._redacted(self.error_text(response))[:_MAX_ERROR_CHARS]
        detail = f"{answer}: {said}" if said else answer
        if status >= 500 or status in _RETRY_STATUSES:
            wait = parse_retry_after(response.headers.get("Retry-After"))
            later = f" (retry after {wait.total_seconds():g}s)" if wait is not None else ""
            raise MailUnavailable(detail + later, retry_after=wait)
        if status in (401, 403):
            raise BadMessage(f"{detail} (check {self.key_setting}: the key must allow sending mail)")
        if 400 <= status < 500:
            raise BadMessage(detail)
        raise MailUnavailable(f"{detail} (redirects are not followed: check {self.url_setting})")

    def _redacted(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text
