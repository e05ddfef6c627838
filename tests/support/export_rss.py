"""One export in a fresh process, and the peak RSS growth it cost: ``python -m tests.support.export_rss DATABASE_URL
DATA_DIR EXPORT_TYPE`` prints ``{"rows", "bytes", "seconds", "growth_mb"}`` as JSON.

The libraries (SQLAlchemy, the drivers, openpyxl, fpdf2) are imported first; then the kernel's high-water mark of
the resident set is reset to the current RSS (``echo 5 > /proc/self/clear_refs``), so the growth is the peak the
export itself reached above where it started, not what importing cost earlier.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SQL = "SELECT id, user_id, title, created_at, score FROM posts WHERE id > :after ORDER BY id"


def _status_mb(field: str) -> float:
    found = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert found, f"no {field} in /proc/self/status"
    return int(found.group(1)) / 1024


def reset_peak_rss() -> float:
    """Reset the peak RSS (VmHWM) to the current RSS and return it, in MB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    return _status_mb("VmHWM")


def main(argv: list[str]) -> None:
    import fpdf  # noqa: F401
    import openpyxl  # type: ignore[import-untyped]  # noqa: F401
    import psycopg  # noqa: F401
    import pymysql  # noqa: F401

    from jobkit.builtin.exports import EXPORT_TYPES, run_export
    from jobkit.config.model import ExportSpec
    from jobkit.config.settings import Settings

    url, data_dir, export_type = argv
    settings = Settings(data_dir=Path(data_dir), database_url=url)
    before = reset_peak_rss()
    start = time.perf_counter()
    result = run_export(settings, ExportSpec("rss", SQL), export_type, {"after": 0}, f"rss.{EXPORT_TYPES[export_type]}")
    seconds = time.perf_counter() - start
    growth = peak_rss_mb() - before
    result.path.unlink()
    print(json.dumps({"rows": result.rows, "bytes": result.bytes, "seconds": seconds, "growth_mb": growth}))


def measure(url: str, data_dir: Path, export_type: str, timeout: float = 600) -> dict[str, Any]:
    """Run :func:`main` in a child process and return what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.export_rss", url, str(data_dir), export_type],
        capture_output=True, text=True, timeout=timeout, check=False, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"the export child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
