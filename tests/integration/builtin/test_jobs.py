"""The seed's helper calls (``jobkit.jobs``), the shipped jobs.yaml, the file mailer and the mail/DB settings."""

from __future__ import annotations

import email
import email.policy
import re
import time
from datetime import datetime, timedelta
from typing import cast

import dramatiq
import pytest
import redis

import jobkit
from jobkit import jobs
from jobkit.config.jobs_file import load_project
from jobkit.config.settings import Settings
from jobkit.errors import SettingsError
from jobkit.services.client import Client
from tests.support import ROOT, wait_for

SEED_QUEUES = {
    "email:send": "default",
    "email:verification": "critical",
    "email:password_reset": "critical",
    "notification:send": "default",
    "export:process": "low",
    "cleanup:old_files": "low",
}


def test_the_shipped_jobs_yaml_declares_each_built_in_task_on_the_seed_queue() -> None:
    project = load_project(ROOT / "jobs.yaml")

    assert {name: project.tasks[name].queue for name in SEED_QUEUES} == SEED_QUEUES
    assert project.tasks["email:send"].api
    assert "system:health_check" in project.tasks
    assert "posts_by_user" in project.exports


def test_the_seed_helpers_enqueue_and_return_the_task_ref(
    client: Client, redis_client: redis.Redis, namespace: str
) -> None:
    refs = [
        jobs.send_email("user@example.com", "Welcome!", "Welcome to our platform", None),
        jobs.send_verification_email("user@example.com", "John Doe", "verification-token-123", "https://example.com"),
        jobs.send_password_reset_email("user@example.com", "John Doe", "reset-token", "https://example.com"),
        jobs.process_export(1, "excel", "posts_by_user", {"user_id": 1}, "export_2025.xlsx"),
        jobs.cleanup_old_files("30d", dry_run=True),
    ]

    assert all(isinstance(ref, jobkit.TaskRef) for ref in refs)
    assert [(ref.task, ref.queue) for ref in refs] == [
        ("email:send", "default"),
        ("email:verification", "critical"),
        ("email:password_reset", "critical"),
        ("export:process", "low"),
        ("cleanup:old_files", "low"),
    ]
    assert client.broker.do_qsize("critical") == 2


def test_delayed_and_timed_emails_wait_in_the_scheduled_set(
    client: Client, redis_client: redis.Redis, namespace: str
) -> None:
    before = time.time()
    jobs.send_delayed_email("user@example.com", "Reminder", "Your session is about to expire", timedelta(minutes=5))
    jobs.send_email_at("admin@example.com", "Daily Report", "Here it is", datetime.now() + timedelta(hours=24))

    due = [
        score / 1000
        for _, score in cast(
            list[tuple[bytes, float]], redis_client.zrange(f"{namespace}:default.scheduled", 0, -1, withscores=True)
        )
    ]
    assert len(due) == 2
    assert 300 <= due[0] - before <= 302
    assert 86_400 <= due[1] - before <= 86_402


def test_process_export_names_the_file_like_the_seed() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0)
    assert jobs.export_filename(1, "excel", now) == "export_1_20250101_120000.xlsx"
    assert jobs.export_filename(1, "csv", now) == "export_1_20250101_120000.csv"
    assert jobs.export_filename("u7", "pdf", now) == "export_u7_20250101_120000.pdf"


def test_the_file_mailer_writes_a_multipart_eml_under_the_data_dir(client: Client, worker: dramatiq.Worker) -> None:
    # The default MAIL_MAILER=file: no mail server needed
    jobs.send_verification_email("user@example.com", "Ann", "t0k", "https://app.test")

    path = wait_for(lambda: list((client.settings.data_dir / "mail").glob("[!.]*.eml")), what="the .eml")[0]
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["To"] == "Ann <user@example.com>"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert "https://app.test/verify-email?token=t0k" in path.read_text()
    assert not list(path.parent.glob(".tmp-*"))


def test_mail_and_database_settings_from_the_environment() -> None:
    env = {
        "MAIL_MAILER": "smtp",
        "SMTP_HOST": "mail.example.com",
        "SMTP_USERNAME": "bot",
        "SMTP_PASSWORD": "hunter2",
        "SMTP_TLS": "tls",
        "MAIL_FROM": "App <noreply@example.com>",
        "DATABASE_URL": "sqlite:////srv/app.db",
        "WEBHOOK_SECRET": "s",
        "JOBKIT_CLEANUP_ROOTS": "var/exports, /tmp/x",
    }
    settings = Settings.from_env(env, dotenv=None)

    assert (settings.mail_mailer, settings.smtp_host, settings.smtp_port, settings.smtp_tls) == (
        "smtp",
        "mail.example.com",
        465,
        "tls",
    )
    assert str(settings.database_path) == "/srv/app.db"
    assert [str(root) for root in settings.cleanup_dirs] == ["var/exports", "/tmp/x"]
    assert "hunter2" not in repr(settings) and "webhook_secret" not in repr(settings)
    defaults = Settings.from_env({"JOBKIT_DATA_DIR": "d"}, dotenv=None)
    assert (defaults.mail_mailer, defaults.smtp_port, defaults.smtp_tls, str(defaults.database_path)) == (
        "file",
        587,
        "starttls",
        "d/app.db",
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MAIL_MAILER": "postfix"}, "MAIL_MAILER='postfix': expected file, smtp or sendgrid"),
        ({"SMTP_TLS": "maybe"}, "SMTP_TLS='maybe': expected starttls, tls or none"),
        ({"SMTP_PORT": "smtp"}, "SMTP_PORT='smtp': expected a port number between 1 and 65535"),
        ({"MAIL_FROM": "nobody"}, "MAIL_FROM='nobody': expected an address like noreply@example.com"),
        (
            {"DATABASE_URL": "oracle://app:secret@db/app"},
            "DATABASE_URL='oracle://app:***@db/app': expected sqlite:///var/app.db (relative path), "
            "sqlite:////srv/app.db (absolute), postgresql://user:password@host/app or mysql://user:password@host/app "
            "(mariadb:// too)",
        ),
        (
            {"JOBKIT_CLEANUP_ROOTS": "var/exports,/"},
            "JOBKIT_CLEANUP_ROOTS='var/exports,/': '/' is too broad to clean; name directories that hold only "
            "generated files, like var/exports",
        ),
    ],
)
def test_a_bad_mail_or_database_setting_names_the_variable_and_the_value(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env, dotenv=None)
    assert str(raised.value) == message


def test_seed_style_export_call_with_sql_is_refused_with_a_pointer_to_exports(client: Client) -> None:
    with pytest.raises(jobkit.DispatchError) as raised:
        jobs.process_export(1, "excel", "SELECT * FROM posts", {}, "export_2025.xlsx")
    assert re.search(r"declared: .*posts_by_user", str(raised.value))
