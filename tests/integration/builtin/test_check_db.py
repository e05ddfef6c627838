"""`jobkit check --db`: each declared export compiled by the real database, problems at FILE:LINE:COL of its sql."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from jobkit.cli import main
from tests.support.databases import KINDS, Database
from tests.support.projects import BUILTIN_JOBS

every_database = pytest.mark.parametrize("database", KINDS, indirect=True)

BROKEN = """  wrong_table:
    sql: "SELECT id FROM postz WHERE user_id = :user_id"
  wrong_column:
    timeout: 5s
    sql: SELECT id, nosuch FROM posts WHERE id BETWEEN :low AND :high
"""
#: What each database says about the two mistakes.
SAYS = {
    "sqlite": ("no such table: postz", "no such column: nosuch"),
    "postgresql": ('relation "postz" does not exist', 'column "nosuch" does not exist'),
    "mariadb": (r"Table '\w+\.postz' doesn't exist", "Unknown column 'nosuch' in '(field list|SELECT)'"),
}


@pytest.fixture
def check(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    monkeypatch.chdir(tmp_path)

    def run(jobs: Path, url: str, *argv: str) -> tuple[int, str, str]:
        monkeypatch.setenv("JOBKIT_JOBS", str(jobs))
        monkeypatch.setenv("JOBKIT_SCHEDULES", str(tmp_path / "none.yaml"))
        monkeypatch.setenv("DATABASE_URL", url)
        code = main(["check", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@every_database
def test_declared_exports_that_compile_pass(
    check: Callable[..., tuple[int, str, str]], write_yaml: Callable[..., Path], database: Database
) -> None:
    code, out, err = check(write_yaml(BUILTIN_JOBS), database.url, "--db")

    assert (code, err) == (0, "")
    assert out.splitlines()[-1].endswith(": ok (3 exports compiled by the database)")


@every_database
def test_each_mistake_is_reported_at_its_sql_with_the_databases_words(
    check: Callable[..., tuple[int, str, str]], write_yaml: Callable[..., Path], database: Database
) -> None:
    jobs = write_yaml(BUILTIN_JOBS + BROKEN)
    lines = jobs.read_text().splitlines()
    table_line = next(i for i, line in enumerate(lines, 1) if "postz" in line)
    column_line = next(i for i, line in enumerate(lines, 1) if "nosuch" in line)

    code, _, err = check(jobs, database.url, "--db")

    assert code == 1
    problems = err.splitlines()
    assert len(problems) == 2, err
    table_says, column_says = SAYS[database.kind]
    shown = re.escape(database.url)
    assert re.fullmatch(
        rf"{re.escape(str(jobs))}:{table_line}:10: exports\.wrong_table\.sql: {table_says} \(checked against {shown}\)",
        problems[0],
    ), problems[0]
    assert re.fullmatch(
        rf"{re.escape(str(jobs))}:{column_line}:10: exports\.wrong_column\.sql: {column_says} "
        rf"\(checked against {shown}\)",
        problems[1],
    ), problems[1]


def test_without_db_the_database_is_not_touched_and_an_unreachable_one_is_said_plainly(
    check: Callable[..., tuple[int, str, str]], write_yaml: Callable[..., Path], tmp_path: Path
) -> None:
    jobs = write_yaml(BUILTIN_JOBS)
    url = f"postgresql://app:Secret-pw@/app?host={tmp_path}/nowhere"

    assert check(jobs, url)[0] == 0

    code, out, err = check(jobs, url, "--db")
    assert code == 1
    assert err.startswith(
        f"jobkit: export 'posts_by_user': cannot connect to postgresql://app:***@/app?host={tmp_path}"
    )
    assert "Secret" not in out + err
