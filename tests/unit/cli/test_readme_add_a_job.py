"""README, "Add a job", followed as written in a project `jobkit init` starts (not in this checkout's jobs.yaml, which a
developer following the README may already have changed): `jobkit new`, the function from the README, `jobkit
check`, and the README's dispatch payload fits the handler. Keeps the README true."""

from __future__ import annotations

import inspect
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobkit.cli import main
from jobkit.config.imports import import_handler
from jobkit.config.jobs_file import load_project
from jobkit.config.payloads import check_payload
from tests.support import ROOT, forget_package


def section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}\n")
    return text[start : text.index("\n## ", start + 1)]


@pytest.fixture
def new_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    for name in ("JOBKIT_JOBS", "JOBKIT_SCHEDULES", "JOBKIT_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    # Not this checkout's folder: a developer who followed "Add a job" here has a `tasks` package in it.
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != ROOT])
    forget_package("tasks")
    yield tmp_path
    forget_package("tasks")


def test_the_readme_steps_give_a_project_that_checks_and_takes_the_readme_payload(
    new_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    steps = section("Add a job")
    command = re.search(r"\$ jobkit (new [^\n]+)", steps)
    function = re.search(r"```python\n# (\S+)\n(.*?)```", steps, re.DOTALL)
    dispatch = re.search(r"--payload '(\{[^']+\})'", steps)
    assert command and function and dispatch

    assert main(["init"]) == 0
    assert main(command.group(1).split()) == 0
    (new_project / function.group(1)).write_text(function.group(2).replace("...", "return None"))
    assert main(["check"]) == 0

    assert "jobs.yaml: ok (3 queues, 10 tasks)" in capsys.readouterr().out
    task = load_project(new_project / "jobs.yaml").tasks["video:process"]
    assert task.queue == "low"
    check_payload(task, inspect.signature(import_handler(task.handler)), json.loads(dispatch.group(1)))
