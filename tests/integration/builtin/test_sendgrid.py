"""MAIL_MAILER=sendgrid against a stand-in of SendGrid's v3 Mail Send endpoint (HTTPS on 127.0.0.1, a certificate
authority made and trusted for each test only), run by a real worker on a real Redis."""

from __future__ import annotations

import base64
import logging
from dataclasses import replace
from pathlib import Path

import dramatiq
import pytest
from litestar.testing import TestClient

from jobkit.api import create_app
from jobkit.builtin.mail import SendGridMailer, build_message, mailer_for
from jobkit.builtin.report import generate_report
from jobkit.config.settings import Settings
from jobkit.engine.broker import JobkitBroker
from jobkit.errors import MailUnavailable
from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support import wait_for
from tests.support.sendgrid import Answer, SendGridStandIn, sendgrid_errors, sendgrid_settings
from tests.support.tokens import SECRET, bearer


@pytest.fixture
def settings(settings: Settings, sendgrid: SendGridStandIn) -> Settings:
    return sendgrid_settings(settings, sendgrid)


def test_a_verification_mail_arrives_with_its_link_names_and_both_parts(
    client: Client, worker: dramatiq.Worker, sendgrid: SendGridStandIn
) -> None:
    # When a verification mail is dispatched with MAIL_MAILER=sendgrid
    client.dispatch(
        "email:verification", to="user@example.com", name="John Doe", token="tok-123", base_url="https://app.test/"
    )

    # Then SendGrid gets one valid v3 request with the bearer key
    request = wait_for(lambda: sendgrid.delivered, what="the mail at SendGrid")[0]
    assert sendgrid.problems == []
    assert request.headers["authorization"] == f"Bearer {sendgrid.api_key}"
    assert request.headers["content-type"] == "application/json"
    body = request.body
    assert body["personalizations"] == [{"to": [{"email": "user@example.com", "name": "John Doe"}]}]
    assert body["from"] == {"email": "noreply@example.com", "name": "Jobkit"}
    assert body["subject"] == "Verify your email address"

    # And it carries the text then the HTML, both with the link, and the message's own headers
    assert [part["type"] for part in body["content"]] == ["text/plain", "text/html"]
    text, html = (part["value"] for part in body["content"])
    link = "https://app.test/verify-email?token=tok-123"
    assert "Hello John Doe," in text and link in text
    assert f'href="{link}"' in html
    assert body["headers"]["Message-ID"].endswith("@example.com>")
    assert body["headers"]["Date"]
    assert "attachments" not in body


def test_a_429_with_retry_after_1_is_retried_after_at_least_a_second_then_delivered(
    client: Client, worker: dramatiq.Worker, broker: JobkitBroker, sendgrid: SendGridStandIn
) -> None:
    # Given SendGrid answers the first call with its rate limit (the task's own backoff is 100-200ms)
    sendgrid.answers.append(Answer(429, {"Retry-After": "1"}, sendgrid_errors((None, "too many requests"))))

    # When a mail is sent
    ref = client.dispatch("email:send", to="user@example.com", subject="Hi", body="Yo")

    # Then the second call comes no sooner than a second after the first, and it is delivered
    wait_for(lambda: sendgrid.delivered, what="the retried mail at SendGrid")
    first, second = sendgrid.received
    gap = second.at - first.at
    print(f"429 Retry-After: 1 -> retried after {gap:.3f}s")
    assert (first.status, second.status) == (429, 202)
    assert 1.0 <= gap < 5.0
    same = {key: value for key, value in first.body.items() if key != "headers"}  # a new Message-ID per attempt
    assert {key: value for key, value in second.body.items() if key != "headers"} == same
    assert sendgrid.problems == []
    queues = Queues(client)
    wait_for(lambda: queues.task("default", ref.id).state == "completed", what="the task completed")
    assert queues.task("default", ref.id).retried == 1
    assert broker.dead_letters("default") == []


def test_a_503_is_retried_on_the_tasks_backoff_and_delivered(
    client: Client, worker: dramatiq.Worker, broker: JobkitBroker, sendgrid: SendGridStandIn
) -> None:
    sendgrid.answers.append(Answer(503, body=sendgrid_errors((None, "Service Unavailable"))))

    client.dispatch("email:send", to="user@example.com", subject="Hi", body="Yo")

    wait_for(lambda: sendgrid.delivered, what="the retried mail at SendGrid")
    assert [request.status for request in sendgrid.received] == [503, 202]
    assert broker.dead_letters("default") == []


def test_a_400_archives_the_task_after_one_attempt_with_sendgrids_error(
    client: Client, worker: dramatiq.Worker, broker: JobkitBroker, sendgrid: SendGridStandIn
) -> None:
    # Given SendGrid refuses the request for good
    sendgrid.answers.append(
        Answer(400, body=sendgrid_errors(("from.email", "The from email does not contain a valid address.")))
    )

    # When a mail is sent
    client.dispatch("email:send", to="user@example.com", subject="Hi", body="Yo")

    # Then the task is archived at once, with what SendGrid said
    dead = wait_for(lambda: broker.dead_letters("default"), what="the dead letter")
    assert dead[0].options["last_error"] == (
        f"SkipRetry: SendGrid at {sendgrid.url}/v3/mail/send answered 400 Bad Request: "
        "from.email: The from email does not contain a valid address."
    )
    assert dead[0].options.get("retries", 0) == 0
    assert len(sendgrid.received) == 1


def test_the_report_goes_out_with_its_html_part_and_both_files_attached(
    client: Client, settings: Settings, sendgrid: SendGridStandIn
) -> None:
    paths = generate_report(client, period="day", to="ops@example.com")

    body = wait_for(lambda: sendgrid.delivered, what="the report at SendGrid")[0].body
    assert sendgrid.problems == []
    assert body["personalizations"] == [{"to": [{"email": "ops@example.com"}]}]
    assert [part["type"] for part in body["content"]] == ["text/plain", "text/html"]
    html_path, csv_path = Path(paths["html"]), Path(paths["csv"])
    assert body["content"][1]["value"] == html_path.read_text(encoding="utf-8")
    attached = {a["filename"]: a for a in body["attachments"]}
    assert set(attached) == {html_path.name, csv_path.name}
    assert base64.b64decode(attached[csv_path.name]["content"]) == csv_path.read_bytes()
    assert base64.b64decode(attached[html_path.name]["content"]) == html_path.read_bytes()
    assert (attached[csv_path.name]["type"], attached[csv_path.name]["disposition"]) == ("text/csv", "attachment")
    assert attached[html_path.name]["type"] == "text/html"


def test_a_certificate_nobody_said_to_trust_is_refused(settings: Settings, sendgrid: SendGridStandIn) -> None:
    # Without SENDGRID_CA_BUNDLE the stand-in's certificate is just self-made: the call never gets through
    message = build_message(mail_from=settings.mail_from, to="user@example.com", subject="Hi", text="Yo")
    mailer = mailer_for(replace(settings, sendgrid_ca_bundle=None))
    assert isinstance(mailer, SendGridMailer)

    with pytest.raises(MailUnavailable) as refused:
        mailer.send(message)

    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
    assert f"cannot reach SendGrid at {sendgrid.url}/v3/mail/send" in str(refused.value)
    assert sendgrid.received == []


def test_the_key_appears_in_no_log_line_and_no_api_answer(
    client: Client,
    worker: dramatiq.Worker,
    broker: JobkitBroker,
    settings: Settings,
    sendgrid: SendGridStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given every log line of every logger captured (httpx and httpcore at DEBUG too)
    caplog.set_level(logging.DEBUG)
    key = sendgrid.api_key
    # And SendGrid rate-limits the first call, and refuses the second for good with an answer echoing the key
    sendgrid.answers += [
        Answer(429, {"Retry-After": "1"}, sendgrid_errors((None, "too many requests"))),
        Answer(202),
        Answer(403, body=sendgrid_errors((None, f"key Bearer {key} may not send mail"))),
    ]

    # When one mail goes out after a retry and another is archived
    sent = client.dispatch("email:send", to="user@example.com", subject="Hi", body="Yo")
    wait_for(lambda: sendgrid.delivered, what="the first mail at SendGrid")
    refused = client.dispatch("email:send", to="user@example.com", subject="Again", body="Yo")
    dead = wait_for(lambda: broker.dead_letters("default"), what="the refused mail archived")

    # Then the archived task says what SendGrid said, with the key taken out
    assert "may not send mail" in dead[0].options["last_error"]
    assert "key Bearer *** may not send mail" in dead[0].options["last_error"]
    assert "check SENDGRID_API_KEY" in dead[0].options["last_error"]

    # And the key is in no API answer about those tasks, their queue or the system
    answers = []
    with TestClient(create_app(client=client, secret=SECRET)) as http:
        for path in (
            f"/api/jobs/task/default/{sent.id}",
            f"/api/jobs/task/default/{refused.id}",
            "/api/jobs/queue/default/tasks?state=archived",
            "/api/jobs/queue/default/tasks?state=completed",
            "/api/jobs/queue/default",
            "/api/jobs/stats",
        ):
            response = http.get(path, headers=bearer("admin", "admin"))
            assert response.status_code == 200, (path, response.text)
            answers.append(response.text)
    assert "may not send mail" in answers[1]  # the answers do carry the error text...
    assert all(key not in answer for answer in answers)  # ...but never the key

    # And in no log line, though the logs did record the calls, the retry and the archiving
    assert "HTTP Request: POST" in caplog.text
    assert "delivered to SendGrid at" in caplog.text
    assert "403" in caplog.text
    assert key not in caplog.text
    assert all(key not in record.getMessage() for record in caplog.records)

    # And not in the settings' repr either
    assert key not in repr(settings) and key not in repr(mailer_for(settings))
