"""Exports: a query named under ``exports:`` in jobs.yaml, run read-only with bound parameters on ``DATABASE_URL``
(SQLite, PostgreSQL or MySQL/MariaDB, see :mod:`jobkit.builtin.database`), streamed from a server-side cursor in
batches to a CSV, xlsx or PDF file under ``JOBKIT_DATA_DIR/exports`` (written to a temp file, then renamed into
place).

SQL never comes from a payload: a task names a declared query and gives values for its ``:named`` parameters.
:class:`ExportError` means the request can never succeed (unknown export, a parameter that does not bind, SQL the
database refuses, the timeout); :class:`~jobkit.errors.ExportUnavailable` (database down, locked) is worth a retry.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from sqlalchemy.exc import DBAPIError

from jobkit.builtin.database import count_rows, driver_sql, failure, query_parameters, read_only
from jobkit.config.model import ExportSpec, Project
from jobkit.config.settings import Settings
from jobkit.errors import DispatchError, ExportError, did_you_mean
from jobkit.store.files import private_directory

__all__ = [
    "EXPORT_TYPES",
    "ExportError",
    "ExportResult",
    "Progress",
    "bind_parameters",
    "check_filename",
    "ensure_demo_database",
    "export_filename",
    "export_payload",
    "query_parameters",
    "run_export",
]

#: export_type -> file extension
EXPORT_TYPES: dict[str, str] = {"csv": "csv", "excel": "xlsx", "pdf": "pdf"}
BATCH_ROWS = 1000
XLSX_MAX_ROWS = 1_048_576  # Excel's sheet limit, header included
PDF_MAX_ROWS = 100_000  # a PDF is built in memory; past this, use csv
_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_USER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


#: Told how far an export is: ``(rows written, rows expected or None, what is happening)``.
Progress = Callable[[int, int | None, str], None]


@dataclass(frozen=True)
class ExportResult:
    path: Path
    rows: int
    bytes: int


def export_filename(user_id: int | str | None, export_type: str, now: datetime | None = None) -> str:
    """The seed's default name, ``export_<user>_<YYYYmmdd_HHMMSS>.<ext>`` (UTC), e.g. export_1_20250101_120000.xlsx."""
    extension = _extension(export_type)
    user = "all" if user_id is None else str(user_id)
    if not _USER_ID.fullmatch(user):
        raise ExportError(f"user_id: expected a number or a short name of letters and digits, found {user_id!r}")
    return f"export_{user}_{(now or datetime.now(UTC)).strftime('%Y%m%d_%H%M%S')}.{extension}"


def check_filename(filename: object, export_type: str) -> str:
    """A plain file name (no directory, no ``..``) ending in the export type's extension."""
    extension = _extension(export_type)
    if not isinstance(filename, str) or not _FILENAME.fullmatch(filename) or ".." in filename:
        raise ExportError(
            f"filename: {filename!r} is not a plain file name (use letters, digits, '.', '_' and '-'; "
            "no directories and no '..')"
        )
    if not filename.lower().endswith(f".{extension}"):
        raise ExportError(f"filename: {filename!r} must end in .{extension} for export_type {export_type!r}")
    return filename


def _extension(export_type: object) -> str:
    if not isinstance(export_type, str) or export_type not in EXPORT_TYPES:
        raise ExportError(f"export_type: expected one of {', '.join(EXPORT_TYPES)}, found {export_type!r}")
    return EXPORT_TYPES[export_type]


def bind_parameters(spec: ExportSpec, params: object, user_id: int | str | None) -> dict[str, Any]:
    """The values to bind: exactly the query's parameters. ``user_id`` fills ``:user_id``, and params may not
    name another user."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ExportError(f"params: expected a mapping of parameter values, found {type(params).__name__}")
    wanted = query_parameters(spec.sql)
    values: dict[str, Any] = dict(params)
    if user_id is not None and "user_id" in wanted:
        if "user_id" in values and values["user_id"] != user_id:
            raise ExportError(
                f"params.user_id={values['user_id']!r} differs from user_id={user_id!r}: an export runs for "
                "the user it belongs to"
            )
        values["user_id"] = user_id
    takes = ", ".join(sorted(wanted)) or "no parameters"
    for key, value in values.items():
        if key not in wanted:
            hint = did_you_mean(key, wanted) or f"it takes {takes}"
            raise ExportError(f"params.{key}: export {spec.name!r} has no parameter :{key} ({hint})")
        if value is not None and not isinstance(value, str | int | float):
            raise ExportError(f"params.{key}: expected text, a number or null, found {type(value).__name__}")
    missing = sorted(wanted - set(values))
    if missing:
        raise ExportError(f"params: export {spec.name!r} needs a value for {', '.join(':' + m for m in missing)}")
    return values


def export_payload(
    project: Project,
    user_id: int | str,
    export_type: str,
    export: str,
    params: dict[str, Any] | None = None,
    filename: str | None = None,
) -> dict[str, Any]:
    """The checked payload of ``export:process`` (for ``jobs.process_export`` and the API's export trigger); raises
    :class:`~jobkit.errors.DispatchError` naming what is wrong."""
    declared = project.exports
    spec = declared.get(export)
    if spec is None:
        hint = did_you_mean(export, declared) or "declared: " + (", ".join(sorted(declared)) or "none")
        raise DispatchError(
            f"export:process: {export!r} is not a query declared under exports: in jobs.yaml ({hint}); "
            "exports name a declared query, never SQL"
        )
    try:
        name = export_filename(user_id, export_type) if filename is None else check_filename(filename, export_type)
        bind_parameters(spec, params or {}, user_id)
    except ExportError as exc:
        raise DispatchError(f"export:process: {exc}") from None
    return {"user_id": user_id, "export_type": export_type, "export": export, "params": params or {}, "filename": name}


def run_export(
    settings: Settings,
    spec: ExportSpec,
    export_type: str,
    params: Mapping[str, Any],
    filename: str,
    progress: Progress | None = None,
) -> ExportResult:
    """Run ``spec`` in a read-only transaction and write its rows to ``data_dir/exports/<filename>`` atomically.

    With ``progress``, the rows are counted first (see :func:`~jobkit.builtin.database.count_rows`; None when the
    database cannot count them) and ``progress`` hears the rows written after each batch of :data:`BATCH_ROWS`.
    """
    check_filename(filename, export_type)
    target = settings.data_dir / "exports" / filename
    with read_only(settings, spec) as connection:
        try:
            total = None
            if progress is not None:
                progress(0, None, "counting rows")
                total = count_rows(connection, settings, spec, params)
                progress(0, total, "rows written")
            result = connection.execution_options(stream_results=True, max_row_buffer=BATCH_ROWS).exec_driver_sql(
                driver_sql(spec.sql, settings.database_kind), dict(params)
            )
            with result, _atomic(target) as stream:
                batches: Iterator[Sequence[Sequence[Any]]] = result.partitions(BATCH_ROWS)
                if progress is not None:
                    batches = _reported(batches, progress, total)
                rows = _WRITERS[export_type](list(result.keys()), batches, stream)
        except DBAPIError as exc:
            raise failure(exc, settings, spec) from None
    return ExportResult(path=target, rows=rows, bytes=target.stat().st_size)


def _reported(
    batches: Iterator[Sequence[Sequence[Any]]], progress: Progress, total: int | None
) -> Iterator[Sequence[Sequence[Any]]]:
    """The batches as they come, telling ``progress`` once the writer has taken each one (asked for the next)."""
    written = 0
    for batch in batches:
        yield batch
        written += len(batch)
        progress(written, total, "rows written")


@contextmanager
def _atomic(target: Path) -> Iterator[IO[bytes]]:
    private_directory(target.parent)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".tmp-{target.name}-")
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _write_csv(columns: list[str], batches: Iterator[Sequence[Sequence[Any]]], stream: IO[bytes]) -> int:
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    writer = csv.writer(text)
    writer.writerow(columns)
    rows = 0
    for batch in batches:
        # csv writes None as an empty field; only BLOBs need converting (to hex).
        writer.writerows(row if bytes not in map(type, row) else [_text(value) for value in row] for row in batch)
        rows += len(batch)
    text.flush()
    text.detach()
    return rows


def _write_xlsx(columns: list[str], batches: Iterator[Sequence[Sequence[Any]]], stream: IO[bytes]) -> int:
    from openpyxl import Workbook  # type: ignore[import-untyped]
    from openpyxl.cell import WriteOnlyCell  # type: ignore[import-untyped]
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE  # type: ignore[import-untyped]

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("export")

    def cell(value: Any) -> Any:
        if value is None or isinstance(value, int | float | Decimal):
            return value
        text = ILLEGAL_CHARACTERS_RE.sub("", _text(value))
        result = WriteOnlyCell(sheet, value=text)
        result.data_type = "s"  # never a formula, whatever the text starts with
        return result

    sheet.append([cell(name) for name in columns])
    rows = 0
    for batch in batches:
        if rows + len(batch) >= XLSX_MAX_ROWS:
            raise ExportError(f"more than {XLSX_MAX_ROWS - 1:,} rows do not fit in an xlsx sheet; use csv")
        for row in batch:
            sheet.append([cell(value) for value in row])
        rows += len(batch)
    workbook.save(stream)
    return rows


def _write_pdf(columns: list[str], batches: Iterator[Sequence[Sequence[Any]]], stream: IO[bytes]) -> int:
    from fpdf import FPDF

    pdf = FPDF(orientation="L", format="A4")
    pdf.set_auto_page_break(auto=False)
    pdf.add_page()
    width = pdf.epw / max(len(columns), 1)
    height = 6.0

    def fit(value: Any) -> str:
        # The core fonts cover Latin-1 only.
        text = _text(value).replace("\n", " ").encode("latin-1", "replace").decode("latin-1")
        while text and pdf.get_string_width(text) > width - 2:
            text = text[: max(len(text) - 4, 0)]
        return text

    def header() -> None:
        pdf.set_font("Helvetica", style="B", size=8)
        for name in columns:
            pdf.cell(width, height, fit(name), border=1)
        pdf.ln(height)
        pdf.set_font("Helvetica", size=8)

    header()
    rows = 0
    for batch in batches:
        if rows + len(batch) > PDF_MAX_ROWS:
            raise ExportError(f"more than {PDF_MAX_ROWS:,} rows make too large a PDF; use csv")
        for row in batch:
            if pdf.will_page_break(height):
                pdf.add_page()
                header()
            for value in row:
                pdf.cell(width, height, fit(value), border=1)
            pdf.ln(height)
        rows += len(batch)
    stream.write(bytes(pdf.output()))
    return rows


_WRITERS = {"csv": _write_csv, "excel": _write_xlsx, "pdf": _write_pdf}

_DEMO_POSTS = [
    (1, 1, "Hello, jobkit", "2025-01-01 12:00:00"),
    (2, 1, "Exports run in the background", "2025-01-02 09:30:00"),
    (3, 1, "Queues: critical, default, low", "2025-01-03 16:45:00"),
    (4, 2, "A post by user 2", "2025-01-04 08:15:00"),
    (5, 2, "Another post by user 2", "2025-01-05 18:00:00"),
]


def ensure_demo_database(settings: Settings) -> Path | None:
    """Create the demo SQLite database (a ``posts`` table for ``exports: posts_by_user``) when ``DATABASE_URL`` is
    unset and the file does not exist yet; returns its path, or None when a database is configured."""
    if settings.database_url is not None:
        return None
    path = settings.database_path
    assert path is not None  # no DATABASE_URL: the data dir's SQLite file
    if path.exists():
        return path
    private_directory(path.parent)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".db")
    os.close(handle)
    try:
        with closing(sqlite3.connect(temporary)) as connection, connection:
            connection.execute(
                "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, title TEXT NOT NULL, "
                "created_at TEXT NOT NULL)"
            )
            connection.execute("CREATE INDEX posts_user_id ON posts (user_id)")
            connection.executemany("INSERT INTO posts VALUES (?, ?, ?, ?)", _DEMO_POSTS)
        # Another process may have created it meanwhile: keep theirs.
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        Path(temporary).unlink(missing_ok=True)
    return path
