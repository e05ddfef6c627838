"""export:process streams: 1,000,000 rows to CSV and to xlsx from SQLite, PostgreSQL and MariaDB, and the peak RSS
growth each costs (`python -m bench.export`).

The servers are the tests' private ones (tests/support/databases.py); each database fills itself, and each export
runs in a fresh process that resets its peak RSS after its imports (tests/support/export_rss.py), so the figure is
what the rows cost.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.support.databases import KINDS, MariaDbServer, PostgresServer, fill_posts, make_database
from tests.support.export_rss import measure

ROWS = 1_000_000
FORMATS = ("csv", "excel")


def main() -> None:
    postgres = PostgresServer().start()
    mariadb = MariaDbServer().start()
    try:
        for kind in KINDS:
            with (
                tempfile.TemporaryDirectory(prefix="jk-bench-export-") as directory,
                make_database(kind, Path(directory), postgres, mariadb) as database,
            ):
                fill_posts(database, rows=ROWS)
                for export_type in FORMATS:
                    result = measure(database.url, Path(directory) / "var", export_type)
                    print(
                        f"export    {kind:<10} {result['rows']:,} rows to {export_type:<5} "
                        f"({result['bytes'] / 1e6:.0f} MB) in {result['seconds']:5.1f}s "
                        f"({result['rows'] / result['seconds']:8,.0f} rows/s), peak RSS growth "
                        f"{result['growth_mb']:.1f} MB",
                        flush=True,
                    )
    finally:
        postgres.stop()
        mariadb.stop()


if __name__ == "__main__":
    main()
