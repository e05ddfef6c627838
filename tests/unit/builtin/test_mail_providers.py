"""The HTTPS mailers without a network: a message taken apart, SendGrid's JSON for it (checked against the v3
request schema), its error answers read, and Retry-After parsed."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from jobkit.builtin.mail import build_message
from jobkit.builtin.mail_providers.http_api import MAX_RETRY_AFTER, parse_retry_after, parts_of
from jobkit.builtin.mail_providers.sendgrid import SendGridMailer
from jobkit.config.settings import Settings
from jobkit.errors import BadMessage, MailUnavailable
from tests.support.sendgrid import mail_send_problems

SETTINGS = Settings(mail_mailer="sendgrid", sendgrid_api_key="SG.unit-test-key", mail_from="Jobkit <no@example.com>")


def test_a_message_with_copies_a_reply_to_a_custom_header_and_an_inline_image_fits_the_v3_schema() -> None:
    message = build_message(
        mail_from=SETTINGS.mail_from, to="ann@example.com", to_name="Ann Æsir", subject="Hi ✓", text="Yo"
    )
    message["Cc"] = "Bob <bob@example.com>"
    message["Bcc"] = "audit@example.com"
    message["Reply-To"] = "Help <help@example.com>"
    message["X-Campaign"] = "Été"
    message.add_attachment(b"\x89PNG...", maintype="image", subtype="png", filename="logo.png", disposition="inline",
                           cid="<logo@example.com>")  # fmt: skip

    body = SendGridMailer(SETTINGS).payload(parts_of(message))

    assert mail_send_problems(body) == []
    assert body["personalizations"] == [
        {
            "to": [{"email": "ann@example.com", "name": "Ann Æsir"}],
            "cc": [{"email": "bob@example.com", "name": "Bob"}],
            "bcc": [{"email": "audit@example.com"}],
        }
    ]
    assert body["reply_to"] == {"email": "help@example.com", "name": "Help"}
    assert body["subject"] == "Hi ✓"
    assert body["attachments"] == [
        {
            "content": base64.b64encode(b"\x89PNG...").decode(),
            "filename": "logo.png",
            "type": "image/png",
            "disposition": "inline",
            "content_id": "logo@example.com",
        }
    ]
    assert set(body["headers"]) == {"Date", "Message-ID", "X-Campaign"}  # no Bcc, no MIME structure
    assert body["headers"]["X-Campaign"] == "=?utf-8?b?w4l0w6k=?="  # RFC 2047, as SendGrid asks for non-ASCII


def test_the_schema_check_catches_what_sendgrid_refuses() -> None:
    assert mail_send_problems(
        {
            "personalizations": [{"to": []}],
            "from": {"email": "nobody"},
            "subject": "",
            "content": [{"type": "text/html", "value": "<p>x</p>"}, {"type": "text/plain", "value": "x"}],
            "attachments": [{"content": "not base64!", "filename": ""}],
            "headers": {"To": "x@example.com"},
        }
    ) == [
        "personalizations[0].to: expected an array of at least one email object",
        "from.email: expected a valid address, found 'nobody'",
        "subject: expected a non-empty string",
        "content: text/plain then text/html must come first, found ['text/html', 'text/plain']",
        "attachments[0].content: expected non-empty base64",
        "attachments[0].filename: required",
        "headers.To: a reserved header, SendGrid sets it itself",
    ]


def test_an_empty_subject_is_a_bad_message_before_any_call() -> None:
    message = build_message(mail_from=SETTINGS.mail_from, to="ann@example.com", subject="", text="Yo")
    with pytest.raises(BadMessage, match="subject: SendGrid needs a subject"):
        SendGridMailer(SETTINGS).payload(parts_of(message))


def test_a_settings_object_without_a_key_is_refused_by_name() -> None:
    with pytest.raises(MailUnavailable, match="SENDGRID_API_KEY is not set"):
        SendGridMailer(Settings(mail_mailer="sendgrid"))


def _answer(status: int, **kwargs: object) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", "https://api.sendgrid.com/v3/mail/send"), **kwargs)  # type: ignore[arg-type]


def test_sendgrids_errors_are_read_field_by_field_and_a_body_that_is_not_json_as_text() -> None:
    mailer = SendGridMailer(SETTINGS)
    errors = {"errors": [{"field": "from.email", "message": "bad from"}, {"field": None, "message": "bad key"}]}
    assert mailer.error_text(_answer(400, json=errors)) == "from.email: bad from; bad key"
    assert mailer.error_text(_answer(502, text="<html>Bad Gateway</html>")) == "<html>Bad Gateway</html>"
    assert mailer.error_text(_answer(400, json=["odd"])) == '["odd"]'


@pytest.mark.parametrize(
    ("value", "wait"),
    [
        ("1", timedelta(seconds=1)),
        (" 120 ", timedelta(minutes=2)),
        ("Wed, 21 Oct 2026 07:28:30 GMT", timedelta(seconds=30)),
        ("Wed, 21 Oct 2026 07:27:00 GMT", timedelta(0)),  # already past
        ("86400", MAX_RETRY_AFTER),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_in_seconds_or_as_a_date(value: str | None, wait: timedelta | None) -> None:
    now = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after(value, now=now) == wait
