"""Golden tests: the exact text a user sees for each kind of mistake in schedules.yaml, with line and column."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from jobkit.cli import main
from jobkit.config.jobs_file import load_project
from jobkit.config.model import ScheduleSpec
from jobkit.config.schedules_file import load_schedules
from jobkit.errors import ConfigError
from tests.support import ROOT

FOLDER = ROOT / "tests" / "golden" / "schedules"
GOLDEN = sorted(FOLDER.glob("[0-9]*.yaml"))
JOBS = FOLDER / "jobs.yml"


def test_there_is_a_golden_file_for_at_least_eight_kinds_of_mistake() -> None:
    assert len(GOLDEN) >= 8


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_loader_reports_the_golden_text(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    project = load_project(JOBS.relative_to(ROOT))

    with pytest.raises(ConfigError) as raised:
        load_schedules(path.relative_to(ROOT), project)

    assert str(raised.value) + "\n" == path.with_suffix(".txt").read_text()


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_jobkit_check_prints_the_golden_text_and_exits_1(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("JOBKIT_JOBS", str(JOBS.relative_to(ROOT)))
    monkeypatch.setenv("JOBKIT_SCHEDULES", str(path.relative_to(ROOT)))

    assert main(["check"]) == 1
    assert capsys.readouterr().err == path.with_suffix(".txt").read_text()


def test_jobkit_check_reports_both_files_at_once(
    write_yaml: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a broken jobs.yaml and a schedules.yaml with a bad spec
    jobs = write_yaml("queues: {default: {weight: 1}}\ntasks:\n  a:b: {handler: nope:nothing}\n")
    schedules = write_yaml('schedules:\n  x: {cron: "0 0 * * * *", task: a:b}\n', "schedules.yaml")
    monkeypatch.chdir(jobs.parent)
    monkeypatch.setenv("JOBKIT_JOBS", "jobs.yaml")
    monkeypatch.setenv("JOBKIT_SCHEDULES", schedules.name)

    # Then both problems are told together
    assert main(["check"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "jobs.yaml:3:18: tasks.a:b.handler: no module named 'nope' (is it installed, or next to jobs.yaml?)",
        "schedules.yaml:2:14: schedules.x.cron: expected 5 fields, found 6 (minute hour day-of-month month "
        "day-of-week; seconds and years are not supported)",
    ]


def test_jobkit_check_passes_on_the_shipped_schedules_yaml(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("JOBKIT_JOBS", raising=False)
    monkeypatch.delenv("JOBKIT_SCHEDULES", raising=False)

    assert main(["check"]) == 0
    assert "schedules.yaml: ok (" in capsys.readouterr().out


def test_every_accepted_form_loads_with_utc_by_default_and_zones_per_file_and_entry(
    write_yaml: Callable[..., Path],
) -> None:
    jobs = write_yaml(JOBS.read_text())
    path = write_yaml(
        """
        timezone: Europe/Berlin
        schedules:
          cron:     {cron: "0 8 * * MON", task: test:greet, payload: {name: Ann}}
          every:    {cron: "@every 90m", task: test:noop, queue: critical}
          daily:    {cron: "@daily 2:00", task: test:noop, timezone: UTC}
          at:       {daily_at: "10:30", task: test:noop}
          weekly:   {weekly_on: {day: sunday, at: "9:05"}, task: test:noop}
          monthly:  {monthly_on: {day: 15, at: "12:00"}, task: test:noop}
          last-day: {monthly_on: {day: last}, task: test:noop}
        """,
        "schedules.yaml",
    )

    loaded = load_schedules(path, load_project(jobs))

    assert loaded.timezone == "Europe/Berlin"
    assert {name: (s.spec, s.timezone) for name, s in loaded.schedules.items()} == {
        "cron": ("0 8 * * MON", "Europe/Berlin"),
        "every": ("@every 90m", "Europe/Berlin"),
        "daily": ("@daily 2:00", "UTC"),
        "at": ("30 10 * * *", "Europe/Berlin"),
        "weekly": ("5 9 * * SUN", "Europe/Berlin"),
        "monthly": ("0 12 15 * *", "Europe/Berlin"),
        "last-day": ("0 0 L * *", "Europe/Berlin"),
    }
    assert loaded.schedules["cron"] == ScheduleSpec(
        "cron", "test:greet", "0 8 * * MON", {"name": "Ann"}, None, "Europe/Berlin", "yaml:cron"
    )
    no_zone = write_yaml("schedules:\n  a: {cron: '@daily', task: test:noop}\n", "plain.yaml")
    assert load_schedules(no_zone, None).schedules["a"].timezone == "UTC"
