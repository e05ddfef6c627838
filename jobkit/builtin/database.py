"""The application's database (``DATABASE_URL``), opened read-only through SQLAlchemy Core for the exports.

Each kind is opened so that the database itself refuses a write and cancels a query that runs too long:

- SQLite: the file opened with ``mode=ro`` and ``PRAGMA query_only``; SQLite has no statement timeout, so a
  progress handler interrupts the statement once the export's timeout has passed.
- PostgreSQL (psycopg 3): ``SET TRANSACTION READ ONLY`` and ``SET LOCAL statement_timeout``.
- MySQL and MariaDB (PyMySQL): ``SET SESSION max_statement_time`` (MariaDB) or ``max_execution_time`` (MySQL), then
  ``START TRANSACTION READ ONLY``.

A query's ``:named`` parameters are found once, by :func:`query_parameters`, and written in the driver's own style,
so what a request may bind is exactly what the query takes; values are always bound, never spliced into SQL.

An error the database reports becomes :class:`~jobkit.errors.ExportUnavailable` when a later attempt may succeed
(cannot connect, locked, deadlock, shutting down) and :class:`~jobkit.errors.ExportError` when it never will (bad
SQL, a write refused, the timeout). Messages carry the driver's first line only, with any password scrubbed.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import NullPool

from jobkit.config.model import ExportSpec
from jobkit.config.settings import Settings
from jobkit.durations import format_duration
from jobkit.errors import ExportError, ExportUnavailable, Problem

__all__ = ["check_exports", "count_rows", "driver_sql", "failure", "query_parameters", "read_only"]

# Literals, quoted identifiers and comments, so that a ':name' inside them is not taken for a parameter.
_NOT_CODE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|\[[^\]]*\]|--[^\n]*|/\*.*?\*/", re.DOTALL)
_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")
#: How long a SQLite query waits for a writer's lock before "database is locked" (then the task retries).
BUSY_TIMEOUT_S = 5.0
#: How long connecting to a database server may take before the attempt fails (and the task retries).
CONNECT_TIMEOUT_S = 10
# SQLite result codes (sqlite_errorname, extended codes start with these) that a later attempt may not meet.
_SQLITE_TRANSIENT = (
    "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_PROTOCOL", "SQLITE_NOMEM",
)  # fmt: skip
# PostgreSQL SQLSTATE classes: connection exception, transaction rollback (serialization, deadlock), insufficient
# resources, operator intervention (shutting down, cannot connect now), lock not available, system error.
_PG_TRANSIENT = ("08", "40", "53", "57P", "55P03", "58")
# MySQL/MariaDB error numbers: too many connections, shutdown, lock wait timeout, deadlock, query killed, connection
# killed, and the client's "cannot connect" / "server gone away" / "lost connection".
_MYSQL_TRANSIENT = {1040, 1053, 1205, 1213, 1317, 1927, 2002, 2003, 2006, 2013, 2055}
_MYSQL_TIMEOUT = {1969, 3024}  # MariaDB max_statement_time, MySQL max_execution_time
_MYSQL_READ_ONLY = {1792}
_PG_READ_ONLY = "25006"

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def query_parameters(sql: str) -> set[str]:
    """The ``:named`` parameters of ``sql`` (a ``:name`` inside a literal, a quoted name or a comment is not one)."""
    return {name for code, is_code in _regions(sql) if is_code for name in _PARAMETER.findall(code)}


def driver_sql(sql: str, kind: str) -> str:
    """``sql`` with its ``:named`` parameters in the driver's style: ``:name`` for sqlite3, ``%(name)s`` (and ``%``
    doubled) for psycopg and PyMySQL."""
    if kind == "sqlite":
        return sql
    parts = []
    for text, is_code in _regions(sql):
        text = text.replace("%", "%%")
        parts.append(_PARAMETER.sub(r"%(\1)s", text) if is_code else text)
    return "".join(parts)


def _regions(sql: str) -> Iterator[tuple[str, bool]]:
    position = 0
    for match in _NOT_CODE.finditer(sql):
        yield sql[position : match.start()], True
        yield match.group(0), False
        position = match.end()
    yield sql[position:], True


# -- connecting ------------------------------------------------------------------------------------------------------
def _engine(settings: Settings) -> Engine:
    """One engine per URL (NullPool: each export has its own connection, closed when it ends)."""
    key = settings.database_url or str(settings.database_path)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = _create_engine(settings)
        return engine


def _create_engine(settings: Settings) -> Engine:
    kind = settings.database_kind
    if kind == "sqlite":
        path = settings.database_path
        assert path is not None
        return create_engine("sqlite://", creator=_sqlite_creator(path), poolclass=NullPool)
    assert settings.database_url is not None
    url = make_url(settings.database_url)
    if kind == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    else:
        name = "mariadb" if url.drivername.startswith("mariadb") else "mysql"
        url = url.set(drivername=f"{name}+pymysql")
        if "charset" not in url.query:
            url = url.update_query_dict({"charset": "utf8mb4"})
    connect_args = {} if "connect_timeout" in url.query else {"connect_timeout": CONNECT_TIMEOUT_S}
    return create_engine(url, poolclass=NullPool, connect_args=connect_args)


def _sqlite_creator(path: Path) -> Callable[[], sqlite3.Connection]:
    def connect() -> sqlite3.Connection:
        if not path.is_file():
            raise FileNotFoundError(
                f"the export database {str(path)!r} does not exist (set DATABASE_URL=sqlite:///path/to/app.db, "
                "or run `jobkit up` to create the demo database)"
            )
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        connection = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        connection.execute("PRAGMA query_only = ON")
        return connection

    return connect


@contextmanager
def read_only(settings: Settings, spec: ExportSpec) -> Iterator[Connection]:
    """A connection to ``DATABASE_URL`` in a read-only transaction whose statements the database cancels after
    ``spec.timeout``. Raises :class:`ExportUnavailable` when the database cannot be reached."""
    try:
        engine = _engine(settings)
    except (ArgumentError, ValueError, ImportError) as exc:
        raise ExportError(f"DATABASE_URL={settings.database_shown!r}: {scrub(str(exc), settings)}") from None
    try:
        connection = engine.connect()
    except DBAPIError as exc:
        raise ExportUnavailable(
            f"export {spec.name!r}: cannot connect to {settings.database_shown}: {_reason(exc, settings)}"
        ) from None
    except FileNotFoundError as exc:
        raise ExportUnavailable(f"export {spec.name!r}: {exc}") from None
    with connection:
        try:
            _begin(connection, settings, spec.timeout)
        except DBAPIError as exc:
            raise failure(exc, settings, spec) from None
        yield connection


def _begin(connection: Connection, settings: Settings, timeout: timedelta) -> None:
    kind = settings.database_kind
    if kind == "sqlite":
        raw = connection.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        deadline = time.monotonic() + timeout.total_seconds()
        raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
    elif kind == "postgresql":
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        connection.exec_driver_sql(f"SET LOCAL statement_timeout = {_milliseconds(timeout)}")
    elif connection.dialect.is_mariadb:  # type: ignore[attr-defined]
        connection.exec_driver_sql(f"SET SESSION max_statement_time = {timeout.total_seconds():.3f}")
        connection.exec_driver_sql("START TRANSACTION READ ONLY")
    else:
        connection.exec_driver_sql(f"SET SESSION max_execution_time = {_milliseconds(timeout)}")
        connection.exec_driver_sql("START TRANSACTION READ ONLY")


def _milliseconds(timeout: timedelta) -> int:
    return max(int(timeout.total_seconds() * 1000), 1)


def count_rows(connection: Connection, settings: Settings, spec: ExportSpec, values: Mapping[str, Any]) -> int | None:
    """How many rows ``spec`` will return (``COUNT(*)`` over the query as a subquery), or None when the database
    cannot count it that way (MariaDB refuses a derived table with two columns of one name, say) or fails to.

    It runs in a savepoint, so a failure leaves the read-only transaction usable for the export itself (PostgreSQL
    refuses every later statement of a transaction in which one failed). The line breaks keep a trailing ``--``
    comment of the query from swallowing the closing parenthesis.
    """
    sql = spec.sql.strip().rstrip(";").rstrip()
    counted = f"SELECT COUNT(*) FROM (\n{driver_sql(sql, settings.database_kind)}\n) AS jobkit_export_rows"
    try:
        with connection.begin_nested():
            total = connection.exec_driver_sql(counted, dict(values)).scalar()
    except DBAPIError:
        return None
    return int(total) if total is not None else None


# -- errors ----------------------------------------------------------------------------------------------------------
def failure(exc: DBAPIError, settings: Settings, spec: ExportSpec) -> ExportError | ExportUnavailable:
    """What a database error means for the export ``spec``: worth a retry, or never going to work."""
    reason = _reason(exc, settings)
    original = exc.orig
    if exc.connection_invalidated or _transient(original):
        return ExportUnavailable(f"export {spec.name!r}: {reason}")
    if _timed_out(original):
        return ExportError(
            f"export {spec.name!r} ran longer than its timeout of {format_duration(spec.timeout)} and the database "
            f"cancelled it (narrow the query, index it, or raise exports.{spec.name}.timeout in jobs.yaml)"
        )
    if _refused_write(original):
        return ExportError(
            f"export {spec.name!r} tried to write and the database refused: {reason} "
            "(exports run in a read-only transaction; declare a query that only reads)"
        )
    return ExportError(f"export {spec.name!r} failed: {reason} (check its sql in jobs.yaml)")


def _transient(error: object) -> bool:
    if isinstance(error, sqlite3.Error):
        return str(getattr(error, "sqlite_errorname", "")).startswith(_SQLITE_TRANSIENT)
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str):
        if sqlstate == "57014":  # query_canceled: by the statement timeout (not transient), or by an operator
            return "statement timeout" not in str(error)
        return sqlstate.startswith(_PG_TRANSIENT)
    return _mysql_code(error) in _MYSQL_TRANSIENT


def _timed_out(error: object) -> bool:
    if isinstance(error, sqlite3.Error):
        return getattr(error, "sqlite_errorname", "") == "SQLITE_INTERRUPT"
    if getattr(error, "sqlstate", None) == "57014":
        return True
    return _mysql_code(error) in _MYSQL_TIMEOUT


def _refused_write(error: object) -> bool:
    if isinstance(error, sqlite3.Error):
        return str(getattr(error, "sqlite_errorname", "")).startswith("SQLITE_READONLY")
    if getattr(error, "sqlstate", None) == _PG_READ_ONLY:
        return True
    return _mysql_code(error) in _MYSQL_READ_ONLY


def _mysql_code(error: object) -> int | None:
    args: tuple[Any, ...] = getattr(error, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _reason(exc: DBAPIError, settings: Settings) -> str:
    """The driver's own message, first line only (psycopg adds the statement and a caret; SQLAlchemy a link), with
    the URL's password scrubbed whatever the driver echoes."""
    error = exc.orig
    args: tuple[Any, ...] = getattr(error, "args", ())
    text = str(args[1]) if _mysql_code(error) is not None and len(args) > 1 else str(error)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    text = lines[0].strip() if lines else type(error).__name__
    return scrub(text, settings)


def scrub(text: str, settings: Settings) -> str:
    """``text`` with the database password (as written in ``DATABASE_URL`` and decoded) replaced by ``***``."""
    url = settings.database_url
    if not url:
        return text
    passwords = set()
    password = urlsplit(url).password
    if password:
        passwords |= {password, unquote(password)}
    for match in re.finditer(r"[?&]password=([^&]*)", url, re.IGNORECASE):
        passwords |= {match.group(1), unquote(match.group(1))}
    for secret in sorted(filter(None, passwords), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


# -- jobkit check --db -----------------------------------------------------------------------------------------------
def check_exports(settings: Settings, exports: Mapping[str, ExportSpec]) -> list[Problem]:
    """Each declared export compiled by the database (``EXPLAIN``, every parameter bound to NULL; nothing runs), as
    problems at the ``sql`` value's place in jobs.yaml. Raises :class:`ExportUnavailable` when the database cannot
    be reached."""
    problems: list[Problem] = []
    kind = settings.database_kind
    for spec in exports.values():
        file, line, column = spec.where or (str(settings.jobs_path), 1, 1)
        values: dict[str, Any] = dict.fromkeys(query_parameters(spec.sql))
        with read_only(settings, spec) as connection:
            try:
                connection.exec_driver_sql("EXPLAIN " + driver_sql(spec.sql, kind), values).close()
            except DBAPIError as exc:
                error = failure(exc, settings, spec)
                if isinstance(error, ExportUnavailable):
                    raise error from None
                problems.append(
                    Problem(
                        file, line, column, f"exports.{spec.name}.sql", _reason(exc, settings),
                        f"checked against {settings.database_shown}",
                    )
                )  # fmt: skip
    return problems
