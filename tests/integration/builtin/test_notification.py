"""notification:send: a signed webhook against a real HTTP server on 127.0.0.1, and the email and log channels."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import dramatiq
import pytest

from jobkit import jobs
from jobkit.config.settings import Settings
from jobkit.engine.broker import JobkitBroker
from jobkit.services.client import Client
from tests.support import wait_for
from tests.support.webhook import Receiver, webhook_receiver

SECRET = "webhook-s3cret"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver("/hooks/jobs?token=abc") as state:
        yield state


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, webhook_secret=SECRET)


def verify(headers: dict[str, str], body: bytes) -> bool:
    signed = headers["X-Jobkit-Timestamp"].encode() + b"." + body
    expected = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["X-Jobkit-Signature"])


def test_webhook_is_signed_and_a_500_is_retried(
    client: Client, worker: dramatiq.Worker, broker: JobkitBroker, receiver: Receiver, namespace: str
) -> None:
    # Given a receiver that fails once with 500
    receiver.statuses = [500]

    # When a notification is sent to it
    jobs.send_notification("webhook", "Export ready", title="Exports", url=receiver.url, data={"id": 7})

    # Then it is posted twice, each time as signed JSON, and the second success ends the task
    wait_for(lambda: len(receiver.requests) == 2, what="the retry")
    for headers, body in receiver.requests:
        assert headers["Content-Type"] == "application/json"
        assert verify(headers, body)
        assert json.loads(body) | {"sent_at": 0} == {
            "title": "Exports",
            "message": "Export ready",
            "data": {"id": 7},
            "sent_at": 0,
        }
    wait_for(lambda: not broker.client.hlen(f"{namespace}:default.msgs"), what="the task to finish")
    assert broker.dead_letters("default") == []


def test_webhook_answering_400_is_archived_after_one_attempt(
    client: Client, worker: dramatiq.Worker, broker: JobkitBroker, receiver: Receiver
) -> None:
    receiver.statuses = [400]

    client.dispatch("notification:send", channel="webhook", message="hi", url=receiver.url)

    dead = wait_for(lambda: broker.dead_letters("default"), what="the dead letter")
    assert len(receiver.requests) == 1
    port = receiver.url.split(":")[2].split("/")[0]
    # The query (which may carry a token) is left out of the error
    assert dead[0].options["last_error"] == (
        f"SkipRetry: webhook http://127.0.0.1:{port}/hooks/jobs answered 400 Bad Request "
        "(not retried: fix the URL or receiver)"
    )


def test_unreachable_webhook_is_retried(client: Client, worker: dramatiq.Worker, broker: JobkitBroker) -> None:
    client.dispatch("notification:send", channel="webhook", message="hi", url="http://127.0.0.1:9/x", max_retries=1)

    dead = wait_for(lambda: broker.dead_letters("default"), what="the dead letter")
    assert dead[0].options["retries"] == 2  # Dramatiq counts every failure, the final one too
    assert dead[0].options["last_error"].startswith("WebhookUnavailable: cannot reach webhook http://127.0.0.1:9/x")


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"channel": "webhook", "url": "file:///etc/passwd"}, "SkipRetry: url: the webhook channel needs an http(s)"),
        ({"channel": "sms"}, "SkipRetry: channel: expected one of webhook, email, log, found 'sms'"),
        ({"channel": "email"}, "SkipRetry: to: the email channel needs an address"),
    ],
)
def test_a_notification_that_cannot_be_sent_is_archived_at_once(
    client: Client, worker: dramatiq.Worker, broker: JobkitBroker, payload: dict[str, Any], error: str
) -> None:
    client.dispatch("notification:send", message="hi", **payload)

    dead = wait_for(lambda: broker.dead_letters("default"), what="the dead letter")
    assert dead[0].options["last_error"].startswith(error)


def test_email_and_log_channels(client: Client, worker: dramatiq.Worker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="jobkit")
    jobs.send_notification("log", "disk almost full", title="Ops")
    jobs.send_notification("email", "disk almost full", title="Ops", to="ops@example.com")

    wait_for(lambda: "notification: Ops: disk almost full" in caplog.text, what="the log line")
    mail = wait_for(lambda: list((client.settings.data_dir / "mail").glob("[!.]*.eml")), what="the .eml")[0]
    assert "Subject: Ops" in mail.read_text()
    assert SECRET not in caplog.text
