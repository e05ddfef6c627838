"""Golden tests: the exact text a user sees for each kind of mistake in jobs.yaml, with line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobkit.cli import main
from jobkit.config.jobs_file import load_project
from jobkit.errors import ConfigError
from tests.support import ROOT

GOLDEN = sorted((ROOT / "tests" / "golden" / "jobs").glob("*.yaml"))


def test_there_is_a_golden_file_for_at_least_twelve_kinds_of_mistake() -> None:
    assert len(GOLDEN) >= 12


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_loader_reports_the_golden_text(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    relative = path.relative_to(ROOT)
    expected = path.with_suffix(".txt").read_text()

    with pytest.raises(ConfigError) as raised:
        load_project(relative)

    assert str(raised.value) + "\n" == expected


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_jobkit_check_prints_the_golden_text_and_exits_1(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("JOBKIT_JOBS", str(path.relative_to(ROOT)))

    assert main(["check"]) == 1
    assert capsys.readouterr().err == path.with_suffix(".txt").read_text()


def test_jobkit_check_passes_on_the_shipped_files(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("JOBKIT_JOBS", raising=False)

    assert main(["check"]) == 0  # whatever tasks and queues a developer has added (README, "Add a job")
    assert capsys.readouterr().out.startswith("jobs.yaml: ok (")
