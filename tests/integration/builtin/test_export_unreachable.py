"""export:process when the database cannot be reached: the task retries, and DATABASE_URL's password is never shown
(not in the task's error, not in any log record)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import dramatiq
import pytest

from jobkit.config.settings import Settings
from jobkit.engine.broker import JobkitBroker
from jobkit.services.client import Client
from tests.support import wait_for

PASSWORD = "Pa55-w0rd/Secret"


@pytest.fixture(params=["postgresql-down", "mariadb-wrong-password"])
def unreachable(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql-down":  # no server behind the socket directory
        return f"postgresql://app:{PASSWORD}@/app?host={tmp_path}/nowhere"
    server = request.getfixturevalue("mariadb_server")  # a real server that refuses the password
    return str(server.url("mysql", user="root", password=PASSWORD))


@pytest.fixture
def settings(settings: Settings, unreachable: str) -> Settings:
    return replace(settings, database_url=unreachable)


def test_the_export_retries_and_the_password_is_never_shown(
    client: Client, worker: dramatiq.Worker, broker: JobkitBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    client.dispatch("export:process", export_type="csv", export="all_posts", filename="x.csv", max_retries=0)

    dead = wait_for(lambda: broker.dead_letters("low"), timeout=30, what="the dead letter")
    error = dead[0].options["last_error"]
    # ExportUnavailable, not SkipRetry: with retries left, the task would have been retried
    assert error.startswith("ExportUnavailable: export 'all_posts': cannot connect to "), error
    assert ":***@" in error
    if "mysql" in error:
        assert "Access denied for user 'root'@'localhost' (using password: YES)" in error
    else:
        assert "/nowhere" in error
    logged = "\n".join(f"{record.getMessage()} {record.exc_info} {record.exc_text}" for record in caplog.records)
    assert "last_error" in logged or "ExportUnavailable" in logged  # the failure was logged
    for text in (error, logged):
        assert "Pa55" not in text and "Secret" not in text and "w0rd" not in text
