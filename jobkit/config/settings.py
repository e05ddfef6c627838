"""Settings from the environment and a ``.env`` file in the working directory (the environment wins)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

from dotenv import dotenv_values

from jobkit.config.logs import LOG_FORMATS, LogFormat
from jobkit.durations import parse_duration
from jobkit.errors import DurationError, SettingsError, did_you_mean

__all__ = ["DatabaseKind", "Settings", "masked_url"]

_NAMESPACE = re.compile(r"[a-zA-Z0-9_.-]+")
# The embedded Redis listens on a socket in the data dir; its path must fit sun_path (108 bytes on Linux).
_MAX_SOCKET_PATH = 100
# A bare address or `Name <address>`; the mail module checks addresses in detail.
_MAIL_FROM = re.compile(r"(?:[^<>\r\n]*<)?[^@\s<>]+@[^@\s<>]+>?")
_SMTP_TLS = {"starttls": "starttls", "true": "starttls", "tls": "tls", "ssl": "tls", "none": "none", "false": "none"}

MailMailer = Literal["file", "smtp", "sendgrid"]
MAIL_MAILERS: tuple[MailMailer, ...] = ("file", "smtp", "sendgrid")
DatabaseKind = Literal["sqlite", "postgresql", "mysql"]
SmtpTls = Literal["starttls", "tls", "none"]
SENDGRID_API_URL = "https://api.sendgrid.com"
# What an API key may hold: it goes into an HTTP header, so no spaces, line breaks or non-ASCII characters.
_API_KEY = re.compile(r"[\x21-\x7e]+")


def _port(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SettingsError(f"{name}={raw!r}: expected a port number between 1 and 65535")
    return int(raw)


def _duration(env: Mapping[str, str], name: str, default: timedelta) -> timedelta:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse_duration(raw)
    except DurationError as exc:
        raise SettingsError(f"{name}={raw!r}: {exc}") from None
    if value <= timedelta():
        raise SettingsError(f"{name}={raw!r}: must be longer than zero")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name}={env[name]!r}: expected true or false")


def _log_format(env: Mapping[str, str]) -> LogFormat:
    raw = env.get("JOBKIT_LOG_FORMAT", "").strip().lower() or "text"
    for name in LOG_FORMATS:
        if name == raw:
            return name
    close = did_you_mean(raw, LOG_FORMATS)
    raise SettingsError(f"JOBKIT_LOG_FORMAT={raw!r}: expected text or json" + (f" ({close})" if close else ""))


#: DATABASE_URL's schemes: the kind of database and the one driver jobkit ships for it (``postgresql+psycopg://``).
_DATABASE_SCHEMES: dict[str, tuple[DatabaseKind, str]] = {
    "sqlite": ("sqlite", "pysqlite"),
    "postgresql": ("postgresql", "psycopg"),
    "postgres": ("postgresql", "psycopg"),
    "mysql": ("mysql", "pymysql"),
    "mariadb": ("mysql", "pymysql"),
}
_PASSWORD_PARAMETER = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)
_DATABASE_EXAMPLES = (
    "expected sqlite:///var/app.db (relative path), sqlite:////srv/app.db (absolute), "
    "postgresql://user:password@host/app or mysql://user:password@host/app (mariadb:// too)"
)


def masked_url(url: str) -> str:
    """``url`` with its password (if any, in the authority or as ``?password=``) shown as ``***``: the only form
    of a URL that goes in a message."""
    url = _PASSWORD_PARAMETER.sub(r"\1***", url)
    scheme, separator, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")  # the last '@': a password may hold '/', '?' or '@' unencoded
    if not separator or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


def _database_url(env: Mapping[str, str]) -> str | None:
    url = env.get("DATABASE_URL", "").strip()
    if not url:
        return None
    shown = masked_url(url)
    scheme, separator, rest = url.partition("://")
    name, _, driver = scheme.lower().partition("+")
    if not separator or name not in _DATABASE_SCHEMES:
        raise SettingsError(f"DATABASE_URL={shown!r}: {_DATABASE_EXAMPLES}")
    shipped = _DATABASE_SCHEMES[name][1]
    if driver and driver != shipped:
        raise SettingsError(
            f"DATABASE_URL={shown!r}: jobkit reads {name} through {shipped}, not {driver} "
            f"(write {name}:// or {name}+{shipped}://)"
        )
    if name == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise SettingsError(f"DATABASE_URL={shown!r}: {_DATABASE_EXAMPLES}")
        return url
    try:
        urlsplit(url).port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise SettingsError(f"DATABASE_URL={shown!r}: the port is not a number between 1 and 65535") from None
    return url


def _https_base_url(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        parts = urlsplit(raw)
        valid = parts.scheme == "https" and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number
        valid = False
    if not valid or parts.username or parts.password or parts.query or parts.fragment:
        raise SettingsError(
            f"{name}={raw!r}: expected an https:// base URL like {default} (the API key travels with every request, "
            "so plain http is refused)"
        )
    return raw.rstrip("/")


def _api_key(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    if raw and not _API_KEY.fullmatch(raw):
        # Never echo the value: it is a secret, even when it is a broken one.
        raise SettingsError(f"{name}: the key holds spaces, line breaks or non-ASCII characters; paste it again")
    return raw or None


def _ca_bundle(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not Path(raw).is_file():
        raise SettingsError(f"{name}={raw!r}: no such file (expected a PEM file of CA certificates)")
    return Path(raw)


def _cleanup_roots(env: Mapping[str, str]) -> tuple[Path, ...]:
    roots = tuple(Path(item.strip()) for item in env.get("JOBKIT_CLEANUP_ROOTS", "").split(",") if item.strip())
    for root in roots:
        resolved = root.resolve()
        if resolved == resolved.parent or resolved == Path.home().resolve():
            raise SettingsError(
                f"JOBKIT_CLEANUP_ROOTS={env['JOBKIT_CLEANUP_ROOTS']!r}: {str(root)!r} is too broad to clean; "
                "name directories that hold only generated files, like var/exports"
            )
    return roots


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = field(default=None, repr=False)  # may carry a password
    """``REDIS_URL``, or built from ``REDIS_HOST``/``PORT``/``PASSWORD``/``DB``; None means the embedded Redis."""
    sentinels: tuple[tuple[str, int], ...] = ()
    """``REDIS_SENTINELS`` as ``host:port,host:port``; used with ``REDIS_SENTINEL_MASTER``."""
    sentinel_master: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    """``REDIS_PASSWORD`` with Sentinel: the password of the master (and replicas) Sentinel names."""
    sentinel_auth: str | None = field(default=None, repr=False)
    """``REDIS_SENTINEL_PASSWORD``: the Sentinels' own password (their ``requirepass``); None when they have none."""
    jobs_path: Path = Path("jobs.yaml")
    schedules_path: Path = Path("schedules.yaml")
    data_dir: Path = Path("var")
    namespace: str = "jobkit"
    """Prefix of every Redis key (``JOBKIT_NAMESPACE``), so several deployments can share one Redis."""
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    secret: str | None = field(default=None, repr=False)
    mail_mailer: MailMailer = "file"
    """``MAIL_MAILER``: ``file`` writes .eml files under ``data_dir/mail``; ``smtp`` sends through ``SMTP_HOST``;
    ``sendgrid`` through SendGrid's HTTPS API."""
    smtp_host: str = "localhost"
    smtp_port: int = 587
    """``SMTP_PORT``; 587 by default, 465 when ``SMTP_TLS=tls``."""
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_tls: SmtpTls = "starttls"
    """``SMTP_TLS``: ``starttls`` (upgrade a plain connection), ``tls`` (TLS from the start) or ``none``."""
    mail_from: str = "jobkit@localhost"
    sendgrid_api_key: str | None = field(default=None, repr=False)
    """``SENDGRID_API_KEY``: sent as the bearer token of each SendGrid call; required by ``MAIL_MAILER=sendgrid``."""
    sendgrid_api_url: str = SENDGRID_API_URL
    """``SENDGRID_API_URL``: the API's base URL, ``https://api.eu.sendgrid.com`` for EU data residency."""
    sendgrid_ca_bundle: Path | None = None
    """``SENDGRID_CA_BUNDLE``: a PEM file of the CAs to trust for the API instead of the default ones (a
    TLS-inspecting proxy, a test stand-in); None: the usual bundle."""
    database_url: str | None = field(default=None, repr=False)
    """``DATABASE_URL`` for exports: ``sqlite:///path``, ``postgresql://…`` or ``mysql://``/``mariadb://…`` (a
    SQLAlchemy URL; may carry a password); None means the SQLite file ``data_dir/app.db``."""
    webhook_secret: str | None = field(default=None, repr=False)
    """``WEBHOOK_SECRET``: key of the HMAC-SHA256 signature on webhook notifications."""
    cleanup_roots: tuple[Path, ...] = ()
    """``JOBKIT_CLEANUP_ROOTS`` (comma-separated); empty means exports, reports and mail under the data dir."""
    encryption_keys: tuple[str, ...] = field(default=(), repr=False)
    """``JOBKIT_ENCRYPTION_KEY``: the key that seals sensitive fields, older keys after a comma (they still open what
    they sealed); empty means a key derived from ``JOBKIT_SECRET``."""
    token_max_ttl: timedelta = timedelta(days=30)
    """``JOBKIT_TOKEN_MAX_TTL``: the longest an API token may live."""
    log_successes: bool = False
    """``JOBKIT_LOG_SUCCESS``: log each task that succeeds at INFO (else DEBUG; failures are always logged)."""
    log_format: LogFormat = "text"
    """``JOBKIT_LOG_FORMAT``: ``text`` for a person, ``json`` (one object a line) for a log shipper."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, dotenv: str | Path | None = ".env") -> Settings:
        values: dict[str, str] = {}
        if dotenv is not None and Path(dotenv).is_file():
            values.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
        values.update(os.environ if environ is None else environ)
        return cls._from_mapping(values)

    @classmethod
    def _from_mapping(cls, env: Mapping[str, str]) -> Settings:
        redis_url = env.get("REDIS_URL", "").strip() or None
        if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(f"REDIS_URL={redis_url!r}: expected redis://, rediss:// or unix://")
        if redis_url is None and env.get("REDIS_HOST", "").strip():
            host = env["REDIS_HOST"].strip()
            port = _port(env, "REDIS_PORT", 6379)
            db = env.get("REDIS_DB", "0").strip() or "0"
            if not db.isdigit():
                raise SettingsError(f"REDIS_DB={db!r}: expected a database number like 0")
            password = env.get("REDIS_PASSWORD", "")
            auth = f":{quote(password, safe='')}@" if password else ""
            redis_url = f"redis://{auth}{host}:{port}/{db}"

        sentinels: list[tuple[str, int]] = []
        for item in filter(None, (s.strip() for s in env.get("REDIS_SENTINELS", "").split(","))):
            host, _, port_text = item.rpartition(":")
            if not host or not port_text.isdigit():
                raise SettingsError(f"REDIS_SENTINELS={env['REDIS_SENTINELS']!r}: expected host:port[,host:port...]")
            sentinels.append((host, int(port_text)))
        master = env.get("REDIS_SENTINEL_MASTER", "").strip() or None
        if sentinels and not master:
            raise SettingsError("REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not: name the master to use")

        namespace = env.get("JOBKIT_NAMESPACE", "jobkit").strip() or "jobkit"
        if not _NAMESPACE.fullmatch(namespace):
            raise SettingsError(f"JOBKIT_NAMESPACE={namespace!r}: use letters, digits, '_', '-' and '.'")
        api_host = env.get("JOBKIT_API_HOST", "127.0.0.1").strip() or "127.0.0.1"
        mailer = env.get("MAIL_MAILER", "file").strip().lower() or "file"
        if mailer not in MAIL_MAILERS:
            close = did_you_mean(mailer, MAIL_MAILERS)
            raise SettingsError(
                f"MAIL_MAILER={mailer!r}: expected {', '.join(MAIL_MAILERS[:-1])} or {MAIL_MAILERS[-1]}"
                + (f" ({close})" if close else "")
            )
        sendgrid_api_key = _api_key(env, "SENDGRID_API_KEY")
        if mailer == "sendgrid" and sendgrid_api_key is None:
            raise SettingsError(
                "MAIL_MAILER=sendgrid needs SENDGRID_API_KEY: set it to a SendGrid API key with the Mail Send "
                "permission"
            )
        tls_text = env.get("SMTP_TLS", "starttls").strip().lower() or "starttls"
        if tls_text not in _SMTP_TLS:
            raise SettingsError(f"SMTP_TLS={tls_text!r}: expected starttls, tls or none")
        smtp_tls: SmtpTls = _SMTP_TLS[tls_text]  # type: ignore[assignment]
        mail_from = env.get("MAIL_FROM", "").strip() or "jobkit@localhost"
        if not _MAIL_FROM.fullmatch(mail_from):
            raise SettingsError(f"MAIL_FROM={mail_from!r}: expected an address like noreply@example.com")
        return cls(
            redis_url=redis_url,
            sentinels=tuple(sentinels),
            sentinel_master=master,
            sentinel_password=env.get("REDIS_PASSWORD") or None if sentinels else None,
            sentinel_auth=env.get("REDIS_SENTINEL_PASSWORD") or None if sentinels else None,
            jobs_path=Path(env.get("JOBKIT_JOBS", "").strip() or "jobs.yaml"),
            schedules_path=Path(env.get("JOBKIT_SCHEDULES", "").strip() or "schedules.yaml"),
            data_dir=Path(env.get("JOBKIT_DATA_DIR", "").strip() or "var"),
            namespace=namespace,
            api_host=api_host,
            api_port=_port(env, "JOBKIT_API_PORT", 8000),
            secret=env.get("JOBKIT_SECRET") or None,
            mail_mailer=next(name for name in MAIL_MAILERS if name == mailer),
            smtp_host=env.get("SMTP_HOST", "").strip() or "localhost",
            smtp_port=_port(env, "SMTP_PORT", 465 if smtp_tls == "tls" else 587),
            smtp_username=env.get("SMTP_USERNAME", "").strip() or None,
            smtp_password=env.get("SMTP_PASSWORD") or None,
            smtp_tls=smtp_tls,
            mail_from=mail_from,
            sendgrid_api_key=sendgrid_api_key,
            sendgrid_api_url=_https_base_url(env, "SENDGRID_API_URL", SENDGRID_API_URL),
            sendgrid_ca_bundle=_ca_bundle(env, "SENDGRID_CA_BUNDLE"),
            database_url=_database_url(env),
            webhook_secret=env.get("WEBHOOK_SECRET") or None,
            cleanup_roots=_cleanup_roots(env),
            encryption_keys=tuple(k.strip() for k in env.get("JOBKIT_ENCRYPTION_KEY", "").split(",") if k.strip()),
            token_max_ttl=_duration(env, "JOBKIT_TOKEN_MAX_TTL", timedelta(days=30)),
            log_successes=_flag(env, "JOBKIT_LOG_SUCCESS"),
            log_format=_log_format(env),
        )

    @property
    def database_kind(self) -> DatabaseKind:
        """What ``DATABASE_URL`` points at: ``sqlite``, ``postgresql`` or ``mysql`` (MySQL and MariaDB)."""
        if self.database_url is None:
            return "sqlite"
        name = self.database_url.partition("://")[0].lower().partition("+")[0]
        return _DATABASE_SCHEMES[name][0]

    @property
    def database_path(self) -> Path | None:
        """The SQLite file exports read: ``DATABASE_URL``'s path, or ``data_dir/app.db``; None for a server."""
        if self.database_url is None:
            return self.data_dir / "app.db"
        if self.database_kind != "sqlite":
            return None
        return Path(self.database_url.partition("://")[2].removeprefix("/"))

    @property
    def database_shown(self) -> str:
        """``DATABASE_URL`` fit for a message: the password masked."""
        return masked_url(self.database_url) if self.database_url else f"sqlite:///{self.data_dir / 'app.db'}"

    @property
    def cleanup_dirs(self) -> tuple[Path, ...]:
        """The directories ``cleanup:old_files`` may delete from."""
        if self.cleanup_roots:
            return self.cleanup_roots
        return tuple(self.data_dir / name for name in ("exports", "reports", "mail"))

    @property
    def embedded(self) -> bool:
        """True when no Redis is configured: ``jobkit up`` runs one in the data dir."""
        return self.redis_url is None and not self.sentinels

    @property
    def embedded_socket(self) -> Path:
        path = self.data_dir.resolve() / "redis.sock"
        if len(str(path)) > _MAX_SOCKET_PATH:
            raise SettingsError(
                f"JOBKIT_DATA_DIR={str(self.data_dir)!r}: the embedded Redis socket path {str(path)!r} is too long "
                f"for a Unix socket (at most {_MAX_SOCKET_PATH} characters); choose a shorter data dir or set REDIS_URL"
            )
        return path

    def effective_redis_url(self) -> str:
        """Where clients connect: ``REDIS_URL`` or the embedded Redis's socket."""
        if self.redis_url:
            return self.redis_url
        return f"unix://{self.embedded_socket}"
