from __future__ import annotations

from pathlib import Path

import pytest

from jobkit.config.settings import Settings, masked_url
from jobkit.errors import SettingsError


def test_defaults_use_the_embedded_redis_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings.from_env({"JOBKIT_DATA_DIR": str(tmp_path)}, dotenv=None)
    assert settings.embedded
    assert settings.effective_redis_url() == f"unix://{tmp_path.resolve()}/redis.sock"
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8000)
    assert settings.jobs_path == Path("jobs.yaml")


def test_seed_style_host_port_password_db() -> None:
    env = {"REDIS_HOST": "localhost", "REDIS_PORT": "6380", "REDIS_PASSWORD": "p@ss/word", "REDIS_DB": "2"}
    settings = Settings.from_env(env, dotenv=None)
    assert settings.redis_url == "redis://:p%40ss%2Fword@localhost:6380/2"
    assert not settings.embedded


def test_redis_url_wins_over_host() -> None:
    env = {"REDIS_URL": "redis://127.0.0.1:6379/1", "REDIS_HOST": "elsewhere"}
    assert Settings.from_env(env, dotenv=None).redis_url == "redis://127.0.0.1:6379/1"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_HOST": "h", "REDIS_PORT": "http"}, "REDIS_PORT='http': expected a port number between 1 and 65535"),
        ({"REDIS_HOST": "h", "REDIS_DB": "one"}, "REDIS_DB='one': expected a database number like 0"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL='localhost:6379': expected redis://, rediss:// or unix://"),
        ({"JOBKIT_API_PORT": "99999"}, "JOBKIT_API_PORT='99999': expected a port number between 1 and 65535"),
        ({"REDIS_SENTINELS": "a:1"}, "REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not: name the master to use"),
        ({"JOBKIT_NAMESPACE": "a b"}, "JOBKIT_NAMESPACE='a b': use letters, digits, '_', '-' and '.'"),
        ({"JOBKIT_LOG_FORMAT": "jsno"}, "JOBKIT_LOG_FORMAT='jsno': expected text or json (did you mean 'json'?)"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_value(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env, dotenv=None)
    assert str(raised.value) == message


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("REDIS_HOST=from-dotenv\nREDIS_PORT=7000\nJOBKIT_JOBS=conf/jobs.yaml\n")
    settings = Settings.from_env({"REDIS_PORT": "7001"}, dotenv=dotenv)
    assert settings.redis_url == "redis://from-dotenv:7001/0"
    assert settings.jobs_path == Path("conf/jobs.yaml")


def test_a_data_dir_too_deep_for_a_unix_socket_is_refused_with_the_fix(tmp_path: Path) -> None:
    settings = Settings.from_env({"JOBKIT_DATA_DIR": str(tmp_path / ("x" * 120))}, dotenv=None)
    with pytest.raises(SettingsError, match="too long for a Unix socket"):
        settings.effective_redis_url()


def test_sendgrid_settings_with_the_eu_endpoint_and_the_key_kept_out_of_repr(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {
        "MAIL_MAILER": "SendGrid",
        "SENDGRID_API_KEY": "SG.abc-123.secret_part",
        "SENDGRID_API_URL": "https://api.eu.sendgrid.com/",
        "SENDGRID_CA_BUNDLE": str(bundle),
    }
    settings = Settings.from_env(env, dotenv=None)
    assert (settings.mail_mailer, settings.sendgrid_api_url) == ("sendgrid", "https://api.eu.sendgrid.com")
    assert settings.sendgrid_api_key == "SG.abc-123.secret_part" and settings.sendgrid_ca_bundle == bundle
    assert "secret_part" not in repr(settings)
    defaults = Settings.from_env({}, dotenv=None)
    assert (defaults.sendgrid_api_key, defaults.sendgrid_api_url, defaults.sendgrid_ca_bundle) == (
        None,
        "https://api.sendgrid.com",
        None,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"MAIL_MAILER": "sendgird"},
            "MAIL_MAILER='sendgird': expected file, smtp or sendgrid (did you mean 'sendgrid'?)",
        ),
        (
            {"MAIL_MAILER": "sendgrid"},
            "MAIL_MAILER=sendgrid needs SENDGRID_API_KEY: set it to a SendGrid API key with the Mail Send permission",
        ),
        (
            {"MAIL_MAILER": "sendgrid", "SENDGRID_API_KEY": "  "},
            "MAIL_MAILER=sendgrid needs SENDGRID_API_KEY: set it to a SendGrid API key with the Mail Send permission",
        ),
        (
            {"SENDGRID_API_URL": "http://api.sendgrid.com"},
            "SENDGRID_API_URL='http://api.sendgrid.com': expected an https:// base URL like https://api.sendgrid.com "
            "(the API key travels with every request, so plain http is refused)",
        ),
        (
            {"SENDGRID_API_URL": "https://api.sendgrid.com:x"},
            "SENDGRID_API_URL='https://api.sendgrid.com:x': expected an https:// base URL like "
            "https://api.sendgrid.com (the API key travels with every request, so plain http is refused)",
        ),
        (
            {"SENDGRID_CA_BUNDLE": "/no/such/ca.pem"},
            "SENDGRID_CA_BUNDLE='/no/such/ca.pem': no such file (expected a PEM file of CA certificates)",
        ),
    ],
)
def test_a_bad_sendgrid_setting_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env, dotenv=None)
    assert str(raised.value) == message


def test_a_broken_key_is_refused_without_showing_it() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"MAIL_MAILER": "sendgrid", "SENDGRID_API_KEY": "SG.top\nsecret"}, dotenv=None)
    assert str(raised.value).startswith("SENDGRID_API_KEY: the key holds spaces, line breaks or non-ASCII")
    assert "secret" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "kind", "path"),
    [
        ("sqlite:///var/app.db", "sqlite", "var/app.db"),
        ("sqlite:////srv/app.db", "sqlite", "/srv/app.db"),
        ("postgresql://app:secret@db.internal:5432/app", "postgresql", None),
        ("postgresql+psycopg://app@/app?host=/run/postgresql", "postgresql", None),
        ("postgres://app:secret@db/app", "postgresql", None),
        ("mysql://app:secret@db/app", "mysql", None),
        ("mariadb+pymysql://app:secret@db/app?unix_socket=/run/mysqld/mysqld.sock", "mysql", None),
    ],
)
def test_database_url_takes_sqlite_postgresql_and_mysql(url: str, kind: str, path: str | None) -> None:
    settings = Settings.from_env({"DATABASE_URL": url}, dotenv=None)
    assert settings.database_kind == kind
    assert (str(settings.database_path) if settings.database_path else None) == path
    assert "secret" not in settings.database_shown and "secret" not in repr(settings)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgresql+psycopg2://app:secret@db/app",
            "DATABASE_URL='postgresql+psycopg2://app:***@db/app': jobkit reads postgresql through psycopg, not "
            "psycopg2 (write postgresql:// or postgresql+psycopg://)",
        ),
        (
            "mysql+mysqldb://app:secret@db/app",
            "DATABASE_URL='mysql+mysqldb://app:***@db/app': jobkit reads mysql through pymysql, not mysqldb "
            "(write mysql:// or mysql+pymysql://)",
        ),
        ("postgresql://app:secret@db:fivefour/app", "DATABASE_URL='postgresql://app:***@db:fivefour/app': the port is"),
        ("sqlite:///", "DATABASE_URL='sqlite:///': expected sqlite:///var/app.db"),
        ("db.sqlite", "DATABASE_URL='db.sqlite': expected sqlite:///var/app.db"),
    ],
)
def test_a_database_url_jobkit_cannot_open_is_refused_with_the_password_masked(url: str, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"DATABASE_URL": url}, dotenv=None)
    assert str(raised.value).startswith(message)
    assert "secret" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:p/ss@word@db/app", "postgresql://app:***@db/app"),
        (
            "postgresql:///app?host=/run&password=hunter2&sslmode=off",
            "postgresql:///app?host=/run&password=***&sslmode=off",
        ),
        ("mysql://app@db/app", "mysql://app@db/app"),
    ],
)
def test_masked_url_hides_the_password_wherever_it_is_written(url: str, shown: str) -> None:
    assert masked_url(url) == shown
