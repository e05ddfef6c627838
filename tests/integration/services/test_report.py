"""report:generate against a history made by a real worker: HTML and CSV figures, the mail (aiosmtpd), failures."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import replace
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import dramatiq
import pytest

from jobkit.builtin.report import generate_report
from jobkit.config.jobs_file import load_project
from jobkit.config.model import Project
from jobkit.config.settings import Settings
from jobkit.errors import MailUnavailable, SkipRetry
from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support import wait_for
from tests.support.projects import OPS_JOBS
from tests.support.smtp import SmtpServer, smtp_settings
from tests.support.webhook import Receiver


@pytest.fixture
def project(write_yaml: Callable[..., Path], receiver: Receiver) -> Project:
    """Alert rules posting to the test's webhook receiver."""
    return load_project(write_yaml(OPS_JOBS.format(url=receiver.url)))


def make_history(client: Client, namespace: str) -> None:
    """default: 3 done + 2 archived (SkipRetry); low: 1 archived after 2 attempts."""
    for n in range(3):
        client.dispatch("test:record", key=f"{namespace}:ok{n}")
    for n in range(2):
        client.dispatch("test:permanent", key=f"{namespace}:bad{n}")
    client.dispatch("test:always_fails", key=f"{namespace}:down")
    queues = Queues(client)
    wait_for(lambda: queues.stats("default").processed_total == 5, what="default processed")
    wait_for(lambda: queues.stats("low").archived == 1, what="low archived")
    wait_for(lambda: queues.stats("critical").processed_total >= 1, what="the dead-tasks alert sent")
    wait_for(lambda: queues.stats("critical").size == 0, what="every alert sent")


def test_the_report_has_the_right_numbers_and_is_mailed(
    client: Client, worker: dramatiq.Worker, settings: Settings, smtp_server: SmtpServer, namespace: str
) -> None:
    # Given a history made by a real worker, and a real SMTP server
    make_history(client, namespace)
    smtp_server.start()
    mailing = Client(smtp_settings(settings, smtp_server), client.project, client.broker)

    # When the weekly report is generated for ops@example.com
    paths = generate_report(mailing, period="week", to="ops@example.com")

    # Then the CSV has each queue's figures and a total
    rows = {row["queue"]: row for row in csv.DictReader(io.StringIO(Path(paths["csv"]).read_text()))}
    assert rows["default"] == {
        "queue": "default", "processed": "5", "failed": "2", "error_rate": "0.4000", "latency_ms": "0", "archived": "2"
    }  # fmt: skip
    assert (rows["low"]["processed"], rows["low"]["failed"], rows["low"]["archived"]) == ("2", "2", "1")
    alerts_sent = int(rows["critical"]["processed"])  # notification:send of the dead-tasks rule, on critical
    assert alerts_sent >= 1 and rows["critical"]["failed"] == "0"
    assert (rows["total"]["processed"], rows["total"]["failed"], rows["total"]["archived"]) == (
        str(7 + alerts_sent), "4", "3"
    )  # fmt: skip
    assert Path(paths["csv"]).parent == settings.data_dir / "reports"

    # And the HTML lists the failing tasks with their last errors, escaped
    page = Path(paths["html"]).read_text()
    assert "<td>test:permanent</td><td>2</td>" in page
    assert "SkipRetry: bad input, do not retry" in page
    assert "ConnectionError: attempt 2 failed" in page
    assert "<td>40.0%</td>" in page

    # And the mail carries the report as its HTML part plus both files
    wait_for(lambda: smtp_server.inbox.messages, what="the mail")
    mail: Message = message_from_bytes(smtp_server.inbox.messages[0].content)  # type: ignore[arg-type]
    assert smtp_server.inbox.messages[0].rcpt_tos == ["ops@example.com"]
    assert mail["Subject"].startswith("jobkit report (week)")
    names = sorted(part.get_filename() or "" for part in mail.walk() if part.get_filename())
    assert names == sorted([Path(paths["html"]).name, Path(paths["csv"]).name])


def test_report_generate_runs_as_a_task(client: Client, worker: dramatiq.Worker, settings: Settings) -> None:
    client.dispatch("report:generate", period="day")
    wait_for(lambda: list((settings.data_dir / "reports").glob("report_day_*.csv")), what="the report files")
    assert len(list((settings.data_dir / "reports").glob("report_day_*.html"))) == 1


@pytest.mark.parametrize(
    ("payload", "message"),
    [({"period": "year"}, "period: expected one of day, week, month"), ({"to": "not an address"}, "invalid email")],
)
def test_a_bad_period_or_address_is_permanent(client: Client, payload: dict[str, str], message: str) -> None:
    with pytest.raises(SkipRetry, match=message):
        generate_report(client, **payload)


def test_a_mail_server_that_is_down_is_transient(client: Client, settings: Settings) -> None:
    down = SmtpServer()  # never started
    mailing = Client(replace(smtp_settings(settings, down)), client.project, client.broker)
    with pytest.raises(MailUnavailable):
        generate_report(mailing, period="day", to="ops@example.com")
