"""export:process reports rows written of rows expected through ``jobkit.progress()``: counted first (or None when
the database cannot count the query), then after each batch, visible in the API's task object while it runs."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import dramatiq
import pytest
from litestar.testing import TestClient

from jobkit.api import create_app
from jobkit.builtin.database import count_rows, read_only
from jobkit.builtin.exports import BATCH_ROWS, run_export
from jobkit.config.model import ExportSpec
from jobkit.config.settings import Settings
from jobkit.services.client import Client
from tests.support import wait_for
from tests.support.databases import KINDS, Database, fill_posts
from tests.support.projects import POSTS
from tests.support.tokens import SECRET, bearer

every_database = pytest.mark.parametrize("database", KINDS, indirect=True)

ROWS = 1_000_000


@every_database
def test_the_rows_are_counted_first_then_reported_after_each_batch(settings: Settings, database: Database) -> None:
    heard: list[tuple[int, int | None, str]] = []
    spec = ExportSpec("some", "SELECT id, title FROM posts WHERE id > :after ORDER BY id -- a trailing comment")

    result = run_export(settings, spec, "csv", {"after": 1}, "some.csv", lambda *report: heard.append(report))

    assert result.rows == len(POSTS) - 1
    assert heard == [(0, None, "counting rows"), (0, 3, "rows written"), (3, 3, "rows written")]


@every_database
def test_a_query_the_database_cannot_count_has_no_total_and_the_export_still_runs(
    settings: Settings, database: Database
) -> None:
    counted = ExportSpec("all", "SELECT id FROM posts;")
    with read_only(settings, counted) as connection:
        # A count that fails (here: no such table) leaves the read-only transaction usable, on PostgreSQL too.
        assert count_rows(connection, settings, ExportSpec("gone", "SELECT id FROM no_such_table"), {}) is None
        assert count_rows(connection, settings, counted, {}) == len(POSTS)
        assert connection.exec_driver_sql("SELECT COUNT(*) FROM posts").scalar() == len(POSTS)

    # MariaDB refuses a derived table with two columns of one name; the others count it.
    twice = ExportSpec("twice", "SELECT id, id FROM posts ORDER BY id")
    heard: list[tuple[int, int | None, str]] = []
    result = run_export(settings, twice, "csv", {}, "twice.csv", lambda *report: heard.append(report))

    total = None if database.kind == "mariadb" else len(POSTS)
    assert result.rows == len(POSTS)
    assert heard[1:] == [(0, total, "rows written"), (len(POSTS), total, "rows written")]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_million_row_export_reports_progress_through_the_api_at_least_every_second(
    client: Client, worker: dramatiq.Worker, database: Database, record_property: Callable[[str, object], None]
) -> None:
    # Given a million posts in SQLite
    database.execute(["DROP TABLE posts"])
    fill_posts(database, rows=ROWS)
    admin = bearer("admin", "ada")

    with TestClient(create_app(client=client, secret=SECRET)) as http:
        # When the export runs, its task read through the API every 50 ms
        ref = client.dispatch("export:process", export_type="csv", export="all_posts", filename="million.csv")
        samples: list[tuple[float, str, dict[str, Any] | None]] = []

        def sample() -> bool:
            response = http.get(f"/api/jobs/task/low/{ref.id}", headers=admin)
            assert response.status_code == 200, response.text
            task: dict[str, Any] = response.json()
            samples.append((time.monotonic(), task["state"], task["progress"]))
            assert task["state"] in ("pending", "active", "completed"), task
            return bool(task["state"] == "completed")

        wait_for(sample, timeout=150, interval=0.05, what="the export to complete")

    # Then from the first sample that saw it active to the one that saw it completed, the progress changed at
    # least once a second
    active = [(at, progress) for at, state, progress in samples if state == "active"]
    completed_at, _, final = samples[-1]
    assert active, "no sample saw the export running"
    changes = [active[0][0]]
    previous = None
    for at, progress in active:
        seen = None if progress is None else (progress["done"], progress["total"], progress["note"])
        if seen != previous:
            changes.append(at)
            previous = seen
    changes.append(completed_at)
    gaps = [later - earlier for earlier, later in itertools.pairwise(changes)]
    record_property("export_progress", {"samples": len(samples), "changes": len(changes) - 2, "max_gap_s": max(gaps)})
    print(f"{len(active)} samples while active, {len(changes) - 2} changes, longest gap {max(gaps):.2f} s")
    assert max(gaps) <= 1.0, [round(gap, 2) for gap in gaps]

    # And what it reported is rows written of the million expected, growing, kept with the completed task
    reported = [progress for _, progress in active if progress is not None and progress["total"] == ROWS]
    done = [progress["done"] for progress in reported]
    assert len(set(done)) >= 3, done
    assert done == sorted(done) and all(d % BATCH_ROWS == 0 for d in done)
    assert all(p["note"] == "rows written" and p["percent"] == round(p["done"] / ROWS * 100, 1) for p in reported)
    assert final is not None
    assert (final["done"], final["total"], final["percent"], final["note"]) == (ROWS, ROWS, 100.0, "rows written")
    assert (client.settings.data_dir / "exports" / "million.csv").stat().st_size > 0
