"""export:process streams: 1,000,000 rows to CSV, and the peak RSS growth it costs (`python -m bench.export`).

The database is filled in a child process, so this process's peak RSS measures the export alone.
"""

from __future__ import annotations

import multiprocessing
import resource
import sqlite3
import tempfile
import time
from contextlib import closing
from pathlib import Path

from jobkit.builtin.exports import run_export
from jobkit.config.model import ExportSpec
from jobkit.config.settings import Settings

ROWS = 1_000_000
SQL = "SELECT id, user_id, title, created_at FROM posts WHERE id > :after ORDER BY id"


def fill(path: Path, rows: int = ROWS) -> None:
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER, title TEXT, created_at TEXT)")
        connection.executemany(
            "INSERT INTO posts VALUES (?, ?, ?, ?)",
            ((i, i % 1000, f"Post number {i}, about things", "2025-01-01 12:00:00") for i in range(1, rows + 1)),
        )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="jk-bench-export-") as directory:
        data = Path(directory)
        child = multiprocessing.get_context("spawn").Process(target=fill, args=(data / "bench.db",))
        child.start()
        child.join()
        settings = Settings(data_dir=data, database_url=f"sqlite:///{data / 'bench.db'}")
        before = peak_rss_mb()
        start = time.perf_counter()
        result = run_export(settings, ExportSpec("bench", SQL), "csv", {"after": 0}, "bench.csv")
        took = time.perf_counter() - start
        growth = peak_rss_mb() - before
    print(
        f"export: {result.rows:,} rows to CSV ({result.bytes / 1e6:.0f} MB) in {took:.1f}s "
        f"({result.rows / took:,.0f} rows/s), peak RSS growth {growth:.1f} MB"
    )


if __name__ == "__main__":
    main()
