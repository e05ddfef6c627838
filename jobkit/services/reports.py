"""Job-system reports: per queue processed, failed, error rate, latency and archived for a period, plus the tasks
that failed for good most often with their last errors; rendered as HTML and CSV (RFC 4180, UTF-8).

A period is the last 1 (``day``), 7 (``week``) or 30 (``month``) UTC days, today included: the daily counters
jobkit keeps (``Queues.history``). Latency and the archived count are the values when the report is made; the
failing tasks come from the archived tasks whose last failure falls in the period.
"""

from __future__ import annotations

import csv
import html
import io
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jobkit.services.queues import Queues
from jobkit.store.files import private_directory

__all__ = [
    "PERIODS",
    "QueueLine",
    "Report",
    "TaskFailures",
    "build_report",
    "render_csv",
    "render_html",
    "render_text",
    "write",
]

PERIODS = {"day": 1, "week": 7, "month": 30}
ARCHIVED_SCANNED = 1000
"""Archived tasks read per queue to find the failing ones (newest first)."""
TOP_TASKS = 10
CSV_COLUMNS = ["queue", "processed", "failed", "error_rate", "latency_ms", "archived"]


@dataclass(frozen=True)
class QueueLine:
    queue: str
    processed: int
    failed: int
    latency_ms: int
    archived: int

    @property
    def error_rate(self) -> float:
        return self.failed / self.processed if self.processed else 0.0


@dataclass
class TaskFailures:
    task: str
    archived: int = 0
    last_errors: list[str] = field(default_factory=list)
    """Distinct last errors, most recent first (at most 3)."""


@dataclass(frozen=True)
class Report:
    period: str
    start: str
    """First day covered (ISO date, UTC)."""
    end: str
    generated_at: datetime
    queues: list[QueueLine]
    failing: list[TaskFailures]

    @property
    def total(self) -> QueueLine:
        return QueueLine(
            "total",
            sum(q.processed for q in self.queues),
            sum(q.failed for q in self.queues),
            max((q.latency_ms for q in self.queues), default=0),
            sum(q.archived for q in self.queues),
        )


def build_report(queues: Queues, period: str, now: datetime | None = None) -> Report:
    """Gather the figures of ``period`` (``day``, ``week`` or ``month``); raises ValueError for another period."""
    if period not in PERIODS:
        raise ValueError(f"period: expected one of {', '.join(PERIODS)}, found {period!r}")
    now = now or datetime.now(UTC)
    days = PERIODS[period]
    history = queues.history(days)
    stats = {s.queue: s for s in queues.all_stats()}
    lines = []
    for name in queues.list():
        rows = [row for row in history if row["queue"] == name]
        lines.append(
            QueueLine(
                name,
                sum(r["processed"] for r in rows),
                sum(r["failed"] for r in rows),
                stats[name].latency_ms,
                stats[name].archived,
            )
        )
    start_day = (now - timedelta(days=days - 1)).date()
    since = datetime(start_day.year, start_day.month, start_day.day, tzinfo=UTC).isoformat()
    return Report(
        period,
        start_day.isoformat(),
        now.date().isoformat(),
        now,
        lines,
        _failing(queues, since),
    )


def _failing(queues: Queues, since: str) -> list[TaskFailures]:
    found: dict[str, TaskFailures] = {}
    counts: Counter[str] = Counter()
    for name in queues.list():
        _, archived = queues.tasks(name, "archived", 1, ARCHIVED_SCANNED)
        for info in sorted(archived, key=lambda i: i.last_failed_at or "", reverse=True):
            if (info.last_failed_at or "") < since:
                continue
            entry = found.setdefault(info.task, TaskFailures(info.task))
            counts[info.task] += 1
            entry.archived += 1
            error = info.last_error or "no error recorded"
            if error not in entry.last_errors and len(entry.last_errors) < 3:
                entry.last_errors.append(error)
    return [found[task] for task, _ in counts.most_common(TOP_TASKS)]


def render_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for line in [*report.queues, report.total]:
        writer.writerow(
            [line.queue, line.processed, line.failed, f"{line.error_rate:.4f}", line.latency_ms, line.archived]
        )
    return out.getvalue()


def render_text(report: Report) -> str:
    """A plain-text summary (the body of the mail)."""
    total = report.total
    lines = [
        f"jobkit report ({report.period}): {report.start} to {report.end} (UTC)",
        "",
        f"{'queue':<16}{'processed':>10}{'failed':>8}{'errors':>8}{'latency':>10}{'archived':>9}",
    ]
    for q in [*report.queues, total]:
        lines.append(
            f"{q.queue:<16}{q.processed:>10}{q.failed:>8}{q.error_rate:>8.1%}{q.latency_ms / 1000:>9.1f}s"
            f"{q.archived:>9}"
        )
    if report.failing:
        lines += ["", "Top failing tasks (archived in the period):"]
        lines += [f"  {t.task}: {t.archived}, last error: {t.last_errors[0]}" for t in report.failing]
    return "\n".join(lines) + "\n"


def render_html(report: Report) -> str:
    e = html.escape
    rows = "\n".join(
        f"<tr{' class=total' if q.queue == 'total' else ''}><td>{e(q.queue)}</td><td>{q.processed}</td>"
        f"<td>{q.failed}</td><td>{q.error_rate:.1%}</td><td>{q.latency_ms / 1000:.1f} s</td><td>{q.archived}</td></tr>"
        for q in [*report.queues, report.total]
    )
    failing = "\n".join(
        f"<tr><td>{e(t.task)}</td><td>{t.archived}</td><td><ul>"
        + "".join(f"<li><code>{e(error)}</code></li>" for error in t.last_errors)
        + "</ul></td></tr>"
        for t in report.failing
    )
    failing_section = (
        f"<table><thead><tr><th>task</th><th>archived</th><th>last errors</th></tr></thead>\n"
        f"<tbody>\n{failing}\n</tbody></table>"
        if report.failing
        else "<p>No task was archived in this period.</p>"
    )
    title = f"jobkit report ({e(report.period)}): {e(report.start)} to {e(report.end)}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5rem; }}
th, td {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: right; vertical-align: top; }}
th:first-child, td:first-child, td ul {{ text-align: left; }}
tr.total td {{ font-weight: bold; }}
</style></head>
<body>
<h1>{title}</h1>
<p>Generated {e(report.generated_at.isoformat(timespec="seconds"))}. Days are UTC; latency and archived are the
values when the report was made.</p>
<h2>Queues</h2>
<table><thead><tr><th>queue</th><th>processed</th><th>failed</th><th>error rate</th><th>latency</th>
<th>archived</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<h2>Top failing tasks</h2>
{failing_section}
</body></html>
"""


def write(report: Report, directory: Path) -> tuple[Path, Path]:
    """Write ``report_<period>_<YYYYmmdd_HHMMSS>.html`` and ``.csv`` under ``directory``, each atomically."""
    stem = f"report_{report.period}_{report.generated_at.strftime('%Y%m%d_%H%M%S')}"
    private_directory(directory)
    html_path, csv_path = directory / f"{stem}.html", directory / f"{stem}.csv"
    _write_atomic(html_path, render_html(report))
    _write_atomic(csv_path, render_csv(report), newline="")
    return html_path, csv_path


def _write_atomic(target: Path, text: str, newline: str | None = None) -> None:
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline=newline) as stream:
            stream.write(text)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
