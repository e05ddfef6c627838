"""email:* against a real SMTP server on 127.0.0.1 (aiosmtpd), run by a real worker on a real Redis."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from email.message import EmailMessage
from typing import Any

import dramatiq
import pytest
import redis
from litestar.testing import TestClient

from jobkit.api import create_app
from jobkit.builtin.mail import SmtpMailer, build_message
from jobkit.config.settings import Settings
from jobkit.engine.broker import JobkitBroker
from jobkit.errors import PayloadError
from jobkit.services.client import Client
from tests.support import wait_for
from tests.support.smtp import SmtpServer, smtp_settings
from tests.support.tokens import SECRET, bearer


@pytest.fixture
def settings(settings: Settings, smtp_server: SmtpServer) -> Settings:
    return smtp_settings(settings, smtp_server)


def parse(raw: bytes | str) -> EmailMessage:
    data = raw if isinstance(raw, bytes) else raw.encode()
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def parts(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def test_verification_mail_arrives_with_headers_both_parts_and_the_link(
    client: Client, worker: dramatiq.Worker, smtp_server: SmtpServer
) -> None:
    # Given a running SMTP server
    smtp_server.start()

    # When a verification mail is dispatched
    ref = client.dispatch(
        "email:verification", to="user@example.com", name="John Doe", token="tok-123", base_url="https://app.test/"
    )

    # Then one message arrives, to the right envelope recipient, on the critical queue
    envelope = wait_for(lambda: smtp_server.inbox.messages, what="the message")[0]
    assert ref.queue == "critical"
    assert envelope.rcpt_tos == ["user@example.com"]
    assert envelope.mail_from == "noreply@example.com"
    message = parse(envelope.content)
    assert message["From"] == "Jobkit <noreply@example.com>"
    assert message["To"] == "John Doe <user@example.com>"
    assert message["Subject"] == "Verify your email address"
    assert message["Message-ID"].endswith("@example.com>")
    assert message["Date"]
    assert message.get_content_type() == "multipart/alternative"
    text, html = parts(message)
    link = "https://app.test/verify-email?token=tok-123"
    assert "Hello John Doe," in text
    assert link in text
    assert f'href="{link}"' in html


def test_password_reset_mail_escapes_the_name_in_html_and_encodes_the_token(
    client: Client, worker: dramatiq.Worker, smtp_server: SmtpServer
) -> None:
    smtp_server.start()

    client.dispatch(
        "email:password_reset", to="user@example.com", name="<b>Eve</b>", token="a b&c", base_url="https://app.test"
    )

    message = parse(wait_for(lambda: smtp_server.inbox.messages, what="the message")[0].content)
    text, html = parts(message)
    assert message["Subject"] == "Reset your password"
    assert "https://app.test/reset-password?token=a+b%26c" in text
    assert "&lt;b&gt;Eve&lt;/b&gt;" in html and "<b>Eve</b>" not in html


def test_email_send_fills_placeholders_and_makes_an_html_part(
    client: Client, worker: dramatiq.Worker, smtp_server: SmtpServer
) -> None:
    smtp_server.start()

    client.dispatch(
        "email:send", to="user@example.com", subject="Hi $name", body="Dear $name,\n\nsee <this>", data={"name": "Ann"}
    )

    message = parse(wait_for(lambda: smtp_server.inbox.messages, what="the message")[0].content)
    text, html = parts(message)
    assert message["Subject"] == "Hi Ann"
    assert text.replace("\r\n", "\n").strip() == "Dear Ann,\n\nsee <this>"
    assert "<p>Dear Ann,</p>" in html and "see &lt;this&gt;" in html


def test_smtp_down_is_retried_and_the_mail_goes_out_once_the_server_is_up(
    client: Client, worker: dramatiq.Worker, smtp_server: SmtpServer, redis_client: redis.Redis, namespace: str
) -> None:
    # Given no server listening on SMTP_PORT
    ref = client.dispatch("email:send", to="user@example.com", subject="Hi", body="Yo", max_retries=50)

    # When the first attempt has failed and is waiting to retry, and the server comes up
    wait_for(lambda: redis_client.zcard(f"{namespace}:default.retry"), what="a retry waiting")
    smtp_server.start()

    # Then a retry delivers it, and nothing is archived
    envelope = wait_for(lambda: smtp_server.inbox.messages, what="the message")[0]
    assert parse(envelope.content)["Subject"] == "Hi"
    assert client.broker.dead_letters("default") == []
    assert ref.queue == "default"


def test_smtp_down_for_good_archives_after_the_retries_with_the_reason(
    client: Client, worker: dramatiq.Worker, broker: JobkitBroker, smtp_server: SmtpServer
) -> None:
    client.dispatch("email:send", to="user@example.com", subject="Hi", body="Yo")  # max_retries: 2

    dead = wait_for(lambda: broker.dead_letters("default"), what="the dead letter")

    assert dead[0].options["retries"] == 3  # Dramatiq counts every failure, the final one too
    assert (
        dead[0]
        .options["last_error"]
        .startswith(f"MailUnavailable: cannot reach the SMTP server at smtp://127.0.0.1:{smtp_server.port}")
    )


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (
            {"to": "not-an-address", "subject": "Hi", "body": "Yo"},
            "SkipRetry: to: invalid email address 'not-an-address' (expected one address like user@example.com)",
        ),
        (
            {"to": "user@example.com", "subject": "Hi $who", "body": "Yo", "data": {"who": "a\r\nBcc: v@example.com"}},
            "SkipRetry: subject: contains a line break or NUL, which could inject mail headers (use one line of text)",
        ),
    ],
    ids=["bad-address", "injected-by-a-placeholder"],
)
def test_a_bad_message_is_archived_after_one_attempt_and_nothing_is_sent(
    client: Client,
    worker: dramatiq.Worker,
    broker: JobkitBroker,
    smtp_server: SmtpServer,
    payload: dict[str, Any],
    error: str,
) -> None:
    smtp_server.start()

    client.dispatch("email:send", **payload)

    dead = wait_for(lambda: broker.dead_letters("default"), what="the dead letter")
    assert dead[0].options["last_error"].startswith(error)
    assert dead[0].options.get("retries", 0) == 0
    assert smtp_server.inbox.recipients_tried == []
    assert smtp_server.inbox.messages == []


def test_a_recipient_the_server_refuses_for_good_is_archived_after_one_attempt(
    client: Client, worker: dramatiq.Worker, broker: JobkitBroker, smtp_server: SmtpServer
) -> None:
    smtp_server.inbox.refuse.add("nobody@example.com")
    smtp_server.start()

    client.dispatch("email:send", to="nobody@example.com", subject="Hi", body="Yo")

    dead = wait_for(lambda: broker.dead_letters("default"), what="the dead letter")
    assert dead[0].options["last_error"].startswith("SkipRetry: smtp://127.0.0.1:")
    assert "nobody@example.com: 550 5.1.1 no such user here" in dead[0].options["last_error"]
    assert dead[0].options.get("retries", 0) == 0
    assert smtp_server.inbox.recipients_tried == ["nobody@example.com"]


def test_a_bad_base_url_is_archived_after_one_attempt(
    client: Client, worker: dramatiq.Worker, broker: JobkitBroker, smtp_server: SmtpServer
) -> None:
    smtp_server.start()

    client.dispatch("email:verification", to="u@example.com", name="U", token="t", base_url="javascript:alert(1)")

    dead = wait_for(lambda: broker.dead_letters("critical"), what="the dead letter")
    assert dead[0].options["last_error"] == (
        "SkipRetry: base_url: expected an http(s) URL like https://example.com, found 'javascript:alert(1)'"
    )


def test_smtp_logs_in_with_the_configured_user(settings: Settings, smtp_server: SmtpServer) -> None:
    # Given a server that wants a login
    smtp_server.logins = {"bot": "right-password"}
    smtp_server.start()
    message = build_message(mail_from=settings.mail_from, to="user@example.com", subject="Hi", text="Yo")

    # When the credentials are configured, the message goes out
    SmtpMailer(replace(settings, smtp_username="bot", smtp_password="right-password")).send(message)

    assert len(smtp_server.inbox.messages) == 1


@pytest.mark.parametrize("breaker", ["\n", "\r", "\x00"])
@pytest.mark.parametrize(
    ("task", "payload"),
    [
        ("email:send", {"to": "a@example.com", "subject": "Hi{b}Bcc: victim@example.com", "body": "Yo"}),
        ("email:send", {"to": "a@example.com{b}Bcc: victim@example.com", "subject": "Hi", "body": "Yo"}),
        (
            "email:verification",
            {"to": "a@example.com", "name": "Ann{b}Bcc: v@example.com", "token": "t", "base_url": "https://e.x"},
        ),
        (
            "notification:send",
            {"channel": "email", "to": "a@example.com", "title": "T{b}Bcc: v@example.com", "message": "m"},
        ),
    ],
    ids=["subject", "to", "name", "title"],
)
def test_a_line_break_or_nul_in_a_mail_header_is_refused_at_dispatch(
    client: Client, task: str, payload: dict[str, Any], breaker: str
) -> None:
    filled: dict[str, Any] = {k: v.format(b=breaker) if isinstance(v, str) else v for k, v in payload.items()}
    with pytest.raises(PayloadError, match="contains a line break or NUL, which could inject mail headers"):
        client.dispatch(task, **filled)
    app = create_app(client=client, secret=SECRET)
    body = {"to": "a@example.com", "subject": f"Hi{breaker}Bcc: v@example.com", "body": "Yo"}
    with TestClient(app) as http:
        refused = http.post("/api/jobs/trigger/email", json=body, headers=bearer("user"))
    assert refused.status_code == 422 and "subject: contains a line break or NUL" in refused.json()["detail"]
