"""export:process on a real worker: the bytes of each format on SQLite, PostgreSQL and MariaDB, the read-only
transaction and the statement timeout each database enforces, memory while streaming a million rows, and what is
refused (never SQL from a payload)."""

from __future__ import annotations

import csv
import io
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import dramatiq
import pytest
from openpyxl import load_workbook  # type: ignore[import-untyped]
from pypdf import PdfReader
from sqlalchemy.exc import DBAPIError

from jobkit import jobs
from jobkit.builtin import database as database_module
from jobkit.builtin.database import read_only
from jobkit.builtin.exports import bind_parameters, ensure_demo_database, query_parameters, run_export
from jobkit.config.jobs_file import load_project
from jobkit.config.model import ExportSpec, Project
from jobkit.config.settings import Settings
from jobkit.engine.broker import JobkitBroker
from jobkit.errors import DispatchError, ExportError, PayloadError
from jobkit.services.client import Client
from tests.support import ROOT, wait_for
from tests.support.databases import KINDS, SLOW_SQL, WRITE_SQL, Database, fill_posts
from tests.support.export_rss import measure
from tests.support.projects import BUILTIN_JOBS, POSTS

#: On SQLite, PostgreSQL and MariaDB: ``@every_database`` on a test that uses the ``database`` fixture.
every_database = pytest.mark.parametrize("database", KINDS, indirect=True)


@pytest.fixture
def project(write_yaml: Callable[..., Path], database: Database) -> Project:
    """The built-in tasks and exports, plus two that only the database can stop: a write and a slow query."""
    extra = (
        f"  sneaky_write:\n    sql: {WRITE_SQL[database.kind]!r}\n"
        f"  slow_count:\n    sql: {SLOW_SQL!r}\n    timeout: 1s\n"
    )
    return load_project(write_yaml(BUILTIN_JOBS + extra))


def exported(settings: Settings, filename: str) -> Path:
    path = settings.data_dir / "exports" / filename
    return cast(Path, wait_for(lambda: path if path.exists() else None, what=f"the export {filename}"))


@every_database
def test_csv_has_the_header_and_rows_quoted_as_rfc_4180(client: Client, worker: dramatiq.Worker) -> None:
    client.dispatch("export:process", export_type="csv", export="all_posts", filename="posts.csv")

    path = exported(client.settings, "posts.csv")

    assert path.read_bytes() == (
        b"id,user_id,title,score\r\n"
        b'1,1,"Hello, world",1.5\r\n'
        b'2,1,"She said ""hi""\nand left",\r\n'
        b'3,2,"=HYPERLINK(""http://evil"")",-2.0\r\n'
        b"4,1,\xc3\x9cn\xc3\xafcode \xe2\x9c\x93,0.0\r\n"
    )
    assert [p.name for p in path.parent.iterdir()] == ["posts.csv"]  # no temp file left behind


@every_database
def test_user_id_binds_the_query_and_names_the_default_file(client: Client, worker: dramatiq.Worker) -> None:
    ref = jobs.process_export(1, "csv", "posts_by_user", {})

    assert ref.queue == "low"
    files = wait_for(lambda: list((client.settings.data_dir / "exports").glob("export_1_*.csv")), what="the export")
    assert re.fullmatch(r"export_1_\d{8}_\d{6}\.csv", files[0].name)
    rows = list(csv.reader(io.StringIO(files[0].read_text(), newline="")))
    assert rows[0] == ["id", "title", "created_at"]
    assert [row[0] for row in rows[1:]] == ["1", "2", "4"]  # user 1's posts only


@every_database
def test_xlsx_reads_back_with_the_same_rows_and_text_is_never_a_formula(
    client: Client, worker: dramatiq.Worker
) -> None:
    client.dispatch("export:process", export_type="excel", export="all_posts", filename="posts.xlsx")

    path = exported(client.settings, "posts.xlsx")

    sheet = load_workbook(path).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == ("id", "user_id", "title", "score")
    assert rows[1:] == [(id_, user, title, score) for id_, user, title, _, score in POSTS]
    assert sheet.cell(row=4, column=3).data_type == "s"  # '=HYPERLINK(...)' stays text


@every_database
def test_pdf_reads_back_with_the_rows(client: Client, worker: dramatiq.Worker) -> None:
    client.dispatch("export:process", export_type="pdf", export="posts_between", params={"low": 1, "high": 3})

    path = wait_for(lambda: list((client.settings.data_dir / "exports").glob("export_all_*.pdf")), what="the pdf")[0]

    text = PdfReader(io.BytesIO(path.read_bytes())).pages[0].extract_text()
    assert "title" in text
    assert "Hello, world" in text
    assert "HYPERLINK" in text
    assert "code" not in text  # row 4 is outside the bounds


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (
            {"export": "posts_by_usr", "params": {"user_id": 1}},
            "SkipRetry: export: 'posts_by_usr' is not a query declared under exports: in jobs.yaml "
            "(did you mean 'posts_by_user'?); exports never run SQL from a payload",
        ),
        (
            {"export": "SELECT * FROM posts", "params": {}},
            "SkipRetry: export: 'SELECT * FROM posts' is not a query declared under exports: in jobs.yaml "
            "(declared: all_posts, posts_between, posts_by_user, slow_count, sneaky_write); exports never run SQL "
            "from a payload",
        ),
        (
            {"export": "posts_by_user", "params": {"userid": 1}},
            "SkipRetry: params.userid: export 'posts_by_user' has no parameter :userid (did you mean 'user_id'?)",
        ),
        (
            {"export": "posts_between", "params": {"low": 1}},
            "SkipRetry: params: export 'posts_between' needs a value for :high",
        ),
        (
            {"export": "posts_between", "params": {"low": 1, "high": [2, 3]}},
            "SkipRetry: params.high: expected text, a number or null, found list",
        ),
        (
            {"export": "all_posts", "filename": "../../etc/passwd.csv"},
            "SkipRetry: filename: '../../etc/passwd.csv' is not a plain file name",
        ),
    ],
    ids=["unknown-export", "sql-as-export", "unknown-param", "missing-param", "param-not-scalar", "path-traversal"],
)
def test_a_request_that_cannot_run_is_archived_after_one_attempt(
    client: Client, worker: dramatiq.Worker, broker: JobkitBroker, payload: dict[str, Any], error: str
) -> None:
    client.dispatch("export:process", export_type="csv", **payload)

    dead = wait_for(lambda: broker.dead_letters("low"), what="the dead letter")

    assert dead[0].options["last_error"].startswith(error)
    assert dead[0].options.get("retries", 0) == 0
    assert not (client.settings.data_dir / "exports").exists() or not any(
        (client.settings.data_dir / "exports").iterdir()
    )


def test_a_payload_carrying_sql_is_refused_at_dispatch(client: Client, broker: JobkitBroker) -> None:
    with pytest.raises(PayloadError, match="export:process: unknown payload field 'query'"):
        client.dispatch("export:process", export_type="csv", export="all_posts", query="DELETE FROM posts")
    with pytest.raises(DispatchError, match=r"'SELECT \* FROM posts' is not a query declared under exports:"):
        jobs.process_export(1, "excel", "SELECT * FROM posts", {}, "export_2025.xlsx")
    assert broker.do_qsize("low") == 0


@pytest.mark.parametrize(
    ("export_type", "filename", "message"),
    [
        ("csv", "a/b.csv", "is not a plain file name"),
        ("csv", "..csv", "is not a plain file name"),
        ("excel", "report.csv", "must end in .xlsx for export_type 'excel'"),
        ("word", None, "export_type: expected one of csv, excel, pdf, found 'word'"),
    ],
)
def test_the_helper_refuses_a_bad_filename_or_type_before_enqueueing(
    client: Client, broker: JobkitBroker, export_type: str, filename: str | None, message: str
) -> None:
    with pytest.raises(DispatchError, match=re.escape(message)):
        jobs.process_export(1, export_type, "posts_by_user", {}, filename)
    assert broker.do_qsize("low") == 0


def test_a_locked_database_is_retried(
    client: Client, worker: dramatiq.Worker, broker: JobkitBroker, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "BUSY_TIMEOUT_S", 0.2)
    database_module._engines.clear()  # the engine reads the busy timeout when it connects
    # Given a writer holding an exclusive lock for longer than the export's busy timeout
    blocker = sqlite3.connect(cast(Path, database.path), isolation_level=None)
    blocker.execute("PRAGMA locking_mode = EXCLUSIVE")
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        client.dispatch("export:process", export_type="csv", export="all_posts", filename="x.csv", max_retries=0)
        dead = wait_for(lambda: broker.dead_letters("low"), timeout=20, what="the dead letter")
    finally:
        blocker.close()
    # Then the attempt failed with a transient error (not SkipRetry): with retries left it would have retried.
    assert dead[0].options["last_error"] == "ExportUnavailable: export 'all_posts': database is locked"


@every_database
def test_a_declared_query_that_writes_is_refused_by_the_database(
    client: Client, worker: dramatiq.Worker, broker: JobkitBroker, database: Database
) -> None:
    # Given a declared query that jobs.yaml accepts (it starts with SELECT or WITH) but that writes
    assert client.project.exports["sneaky_write"].sql == WRITE_SQL[database.kind]

    client.dispatch("export:process", export_type="csv", export="sneaky_write", filename="w.csv")

    dead = wait_for(lambda: broker.dead_letters("low"), timeout=20, what="the dead letter")
    error = dead[0].options["last_error"]
    assert error.startswith("SkipRetry: export 'sneaky_write' tried to write and the database refused: "), error
    assert error.endswith("(exports run in a read-only transaction; declare a query that only reads)")
    assert dead[0].options.get("retries", 0) == 0
    assert database.count() == len(POSTS)  # nothing was written
    assert not (client.settings.data_dir / "exports" / "w.csv").exists()


@every_database
def test_the_session_refuses_any_write_statement(settings: Settings, database: Database) -> None:
    spec = ExportSpec("direct", "SELECT 1")
    with read_only(settings, spec) as connection, pytest.raises(DBAPIError) as raised:
        connection.exec_driver_sql("DELETE FROM posts")
    assert database_module._refused_write(raised.value.orig), raised.value.orig
    assert database.count() == len(POSTS)


@every_database
def test_the_statement_timeout_cancels_a_slow_query(
    client: Client, worker: dramatiq.Worker, broker: JobkitBroker, database: Database
) -> None:
    # Given a query of a billion joined rows, declared with timeout: 1s
    started = time.monotonic()
    client.dispatch("export:process", export_type="csv", export="slow_count", filename="slow.csv")

    dead = wait_for(lambda: broker.dead_letters("low"), timeout=30, what="the dead letter")

    took = time.monotonic() - started
    assert dead[0].options["last_error"] == (
        "SkipRetry: export 'slow_count' ran longer than its timeout of 1s and the database cancelled it (narrow the "
        "query, index it, or raise exports.slow_count.timeout in jobs.yaml)"
    )
    assert took < 10, f"cancelled after {took:.1f}s"


@every_database
@pytest.mark.slow
@pytest.mark.timeout(600)
# A million rows to CSV, and to xlsx a tenth of that (openpyxl writes 1 M rows in about a minute per database; the
# 1 M-row xlsx figures are `make bench`'s). Rows held in memory would cost far more than these bounds: xlsx cells
# kept by openpyxl are some hundred bytes each, CSV rows fetched at once 162 MB (PostgreSQL) and 346 MB (MariaDB).
@pytest.mark.parametrize(("export_type", "rows", "bound_mb"), [("csv", 1_000_000, 100), ("excel", 100_000, 30)])
def test_a_million_rows_stream_in_under_100_mb(
    database: Database,
    tmp_path: Path,
    export_type: str,
    rows: int,
    bound_mb: int,
    record_property: Callable[[str, object], None],
) -> None:
    # Given the posts (the database fills itself)
    database.execute(
        ["DROP TABLE posts"] if database.kind == "sqlite" else ["DROP FUNCTION bump_posts", "DROP TABLE posts"]
    )
    fill_posts(database, rows=rows)

    # When a fresh process exports them all
    result = measure(database.url, tmp_path / "var", export_type)

    record_property("export", result)
    print(f"{database.kind} {export_type}: {result}")
    assert result["rows"] == rows
    assert result["growth_mb"] < bound_mb, result


def test_query_parameters_ignore_literals_and_comments() -> None:
    sql = "SELECT ':nope', \"x:y\" FROM t -- :comment\nWHERE a = :a AND b = :b /* :c */ AND c = 'x'':no'"
    assert query_parameters(sql) == {"a", "b"}


def test_params_may_not_name_another_user(client: Client) -> None:
    with pytest.raises(ExportError, match=r"params\.user_id=2 differs from user_id=1"):
        bind_parameters(client.project.exports["posts_by_user"], {"user_id": 2}, 1)


def test_the_demo_database_serves_the_shipped_posts_by_user_export(tmp_path: Path) -> None:
    # Given the shipped jobs.yaml and no DATABASE_URL
    settings = Settings(data_dir=tmp_path / "var")
    spec = load_project(ROOT / "jobs.yaml").exports["posts_by_user"]

    path = ensure_demo_database(settings)

    assert path == tmp_path / "var" / "app.db"
    assert ensure_demo_database(settings) == path  # idempotent
    assert ensure_demo_database(replace(settings, database_url="sqlite:///elsewhere.db")) is None
    result = run_export(settings, spec, "csv", {"user_id": 1}, "demo.csv")
    rows = list(csv.reader(io.StringIO(result.path.read_text(), newline="")))
    assert rows[0] == ["id", "title", "created_at"]
    assert rows[1][1] == "Hello, jobkit"
