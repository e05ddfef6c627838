"""Private database servers for the tests and `make bench`: a PostgreSQL cluster (Debian's binaries, ``initdb`` into a
temp dir) and a MariaDB server (``mariadb-install-db`` + ``mariadbd`` on a temp datadir), each listening on a Unix
socket only, and the posts table the export tests read, made the same way on SQLite, PostgreSQL and MariaDB.

A server that is not installed fails the run with the command that installs it (`make databases`); it never skips.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg
import pymysql

from tests.support.projects import POSTS

__all__ = [
    "KINDS",
    "SLOW_SQL",
    "WRITE_SQL",
    "Database",
    "Kind",
    "MariaDbServer",
    "PostgresServer",
    "fill_posts",
    "make_database",
]

Kind = Literal["sqlite", "postgresql", "mariadb"]
KINDS: tuple[Kind, ...] = ("sqlite", "postgresql", "mariadb")

#: Seconds of real work on every kind (a billion-row join of a counted series), for the statement timeout.
SLOW_SQL = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) "
    "SELECT count(*) AS n FROM c AS a, c AS b, c AS d WHERE a.x + b.x + d.x > 0"
)
#: A declared query (it starts with SELECT or WITH, so jobs.yaml takes it) that writes: only the database stops it.
WRITE_SQL: dict[Kind, str] = {
    "sqlite": "WITH doomed AS (SELECT 1) DELETE FROM posts RETURNING id",
    "postgresql": "SELECT bump_posts() AS added",
    "mariadb": "SELECT bump_posts() AS added",
}
_STARTUP_S = 30.0
_INSTALL = "run `make databases` (it apt-get installs postgresql and mariadb-server)"


def _wait(check: Any, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _STARTUP_S
    while True:
        try:
            check()
            return
        except Exception as exc:
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited with {process.returncode}:\n{log.read_text()[-3000:]}") from exc
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not accept connections within {_STARTUP_S}s: {exc}") from exc
            time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes] | None, sig: signal.Signals) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class PostgresServer:
    """A PostgreSQL cluster of its own, run as the ``postgres`` user (PostgreSQL refuses root), trust auth on a Unix
    socket in its temp dir, no TCP listener."""

    def __init__(self) -> None:
        initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not initdb:
            raise RuntimeError(f"PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): {_INSTALL}")
        self.bin = Path(initdb[-1]).parent
        self.directory = Path(tempfile.mkdtemp(prefix="jk-pg-"))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PostgresServer:
        # As root, the server runs as the postgres user (the Popen is the postmaster itself, so signals reach it).
        user: dict[str, Any] = {}
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
            user = {"user": "postgres", "group": "postgres", "extra_groups": []}
        log = self.directory / "postgres.log"
        subprocess.run(
            [
                str(self.bin / "initdb"), "-D", str(self.directory / "data"), "-U", "postgres", "--auth=trust",
                "--no-sync", "-E", "UTF8", "--locale=C.UTF-8",
            ],
            check=True, capture_output=True, cwd=self.directory, **user,
        )  # fmt: skip
        self.process = subprocess.Popen(
            [
                str(self.bin / "postgres"), "-D", str(self.directory / "data"), "-k", str(self.directory),
                "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
            ],
            stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=self.directory, **user,
        )  # fmt: skip
        _wait(lambda: self.admin("postgres").close(), "postgres", self.process, log)
        return self

    def admin(self, database: str) -> psycopg.Connection[Any]:
        return psycopg.connect(host=str(self.directory), user="postgres", dbname=database, autocommit=True)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.directory}"

    def create(self, database: str) -> None:
        with closing(self.admin("postgres")) as connection:
            connection.execute(f'CREATE DATABASE "{database}"')

    def drop(self, database: str) -> None:
        with closing(self.admin("postgres")) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    def stop(self) -> None:
        _stop(self.process, signal.SIGINT)  # fast shutdown
        shutil.rmtree(self.directory, ignore_errors=True)


class MariaDbServer:
    """A MariaDB server of its own on a temp datadir, root without a password over a Unix socket, no networking."""

    def __init__(self) -> None:
        self.mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        self.install_db = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
        if not (os.access(self.mariadbd, os.X_OK) and os.access(self.install_db, os.X_OK)):
            raise RuntimeError(f"MariaDB is not installed (no mariadbd / mariadb-install-db): {_INSTALL}")
        self.directory = Path(tempfile.mkdtemp(prefix="jk-maria-"))
        self.socket = self.directory / "mariadb.sock"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> MariaDbServer:
        data = self.directory / "data"
        user = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(
            [self.install_db, "--no-defaults", f"--datadir={data}", *user, "--auth-root-authentication-method=normal",
             "--skip-test-db"],
            check=True, capture_output=True,
        )  # fmt: skip
        log = self.directory / "mariadb.log"
        self.process = subprocess.Popen(
            [
                self.mariadbd, "--no-defaults", f"--datadir={data}", f"--socket={self.socket}", "--skip-networking",
                f"--pid-file={self.directory / 'mariadb.pid'}", f"--log-error={log}", *user,
                "--innodb-flush-log-at-trx-commit=0", "--innodb-buffer-pool-size=64M", "--skip-log-bin",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(lambda: self.admin().close(), "mariadbd", self.process, log)
        return self

    def admin(self, database: str | None = None) -> pymysql.Connection[Any]:
        return pymysql.connect(
            unix_socket=str(self.socket), user="root", database=database, autocommit=True, charset="utf8mb4"
        )

    def url(self, database: str, user: str = "root", password: str = "") -> str:
        auth = f"{user}:{password}" if password else user
        return f"mysql://{auth}@localhost/{database}?unix_socket={self.socket}"

    def create(self, database: str) -> None:
        with closing(self.admin()) as connection, connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")

    def drop(self, database: str) -> None:
        with closing(self.admin()) as connection, connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")

    def stop(self) -> None:
        _stop(self.process, signal.SIGTERM)
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class Database:
    """One test's database: its kind, the ``DATABASE_URL`` that reaches it, and how to run setup SQL as admin."""

    kind: Kind
    url: str
    path: Path | None = None  # the SQLite file
    postgres: PostgresServer | None = None
    mariadb: MariaDbServer | None = None
    name: str = ""

    def _admin(self) -> Any:
        """A DB-API connection with every right (autocommit on the servers)."""
        if self.kind == "sqlite":
            assert self.path is not None
            return sqlite3.connect(self.path, isolation_level=None)
        if self.kind == "postgresql":
            assert self.postgres is not None
            return self.postgres.admin(self.name)
        assert self.mariadb is not None
        return self.mariadb.admin(self.name)

    def execute(self, statements: Sequence[str], rows: Sequence[Sequence[Any]] = (), insert: str = "") -> None:
        """Run ``statements`` (DDL) and then ``insert`` (``%s`` placeholders) once per row in ``rows``, as admin."""
        with closing(self._admin()) as connection:
            cursor = connection.cursor()
            for statement in statements:
                cursor.execute(statement)
            if rows:
                cursor.executemany(insert.replace("%s", "?") if self.kind == "sqlite" else insert, rows)
            cursor.close()

    def count(self, table: str = "posts") -> int:
        with closing(self._admin()) as connection:
            cursor = connection.cursor()
            cursor.execute(f"SELECT count(*) FROM {table}")
            (count,) = cursor.fetchone()
            cursor.close()
            return int(count)


_DOUBLE: dict[Kind, str] = {"sqlite": "REAL", "postgresql": "DOUBLE PRECISION", "mariadb": "DOUBLE"}


@contextlib.contextmanager
def make_database(
    kind: Kind, directory: Path, postgres: PostgresServer | None = None, mariadb: MariaDbServer | None = None
) -> Iterator[Database]:
    """A fresh, empty database of ``kind`` (a file in ``directory``, or a new database on the server), dropped at
    the end."""
    name = f"jk_{uuid.uuid4().hex[:12]}"
    if kind == "sqlite":
        path = directory / "app.db"
        sqlite3.connect(path).close()
        yield Database(kind, f"sqlite:///{path}", path=path, name=name)
        return
    server: PostgresServer | MariaDbServer | None = postgres if kind == "postgresql" else mariadb
    assert server is not None, f"no {kind} server given"
    server.create(name)
    try:
        yield Database(kind, server.url(name), postgres=postgres, mariadb=mariadb, name=name)
    finally:
        server.drop(name)


def fill_posts(database: Database, rows: int | None = None) -> None:
    """The posts table: :data:`POSTS`, or ``rows`` generated rows (made by the database itself, fast), and on
    PostgreSQL and MariaDB a function ``bump_posts()`` that inserts a post (a SELECT that writes)."""
    kind = database.kind
    statements = [
        f"CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER, title TEXT, created_at TEXT, "
        f"score {_DOUBLE[kind]})"
    ]
    if kind == "postgresql":
        statements.append(
            "CREATE FUNCTION bump_posts() RETURNS integer LANGUAGE sql AS "
            "$$ INSERT INTO posts VALUES (1000, 9, 'written by an export', '2025-01-01', NULL) RETURNING 1 $$"
        )
    elif kind == "mariadb":
        statements.append(
            "CREATE FUNCTION bump_posts() RETURNS INTEGER MODIFIES SQL DATA BEGIN "
            "INSERT INTO posts VALUES (1000, 9, 'written by an export', '2025-01-01', NULL); RETURN 1; END"
        )
    if rows is not None:
        title = {
            "sqlite": "'Post number ' || n || ', about things'",
            "postgresql": "'Post number ' || n || ', about things'",
            "mariadb": "CONCAT('Post number ', n, ', about things')",
        }[kind]
        source = {
            "sqlite": f"(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {rows}) "
            "SELECT n FROM s)",
            "postgresql": f"(SELECT generate_series(1, {rows}) AS n)",
            "mariadb": f"(SELECT seq AS n FROM seq_1_to_{rows})",
        }[kind]
        statements.append(
            f"INSERT INTO posts SELECT n, n % 1000, {title}, '2025-01-01 12:00:00', n * 0.5 FROM {source} AS g"
        )
        database.execute(statements)
        return
    database.execute(statements, POSTS, "INSERT INTO posts VALUES (%s, %s, %s, %s, %s)")
