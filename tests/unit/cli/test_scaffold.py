"""`jobkit init` and `jobkit new`: a starter project in an empty folder, and one more task added to jobs.yaml as text
(every comment and blank line kept), with its handler stub. `jobkit check` in an empty folder says one thing."""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobkit.cli import main
from jobkit.cli.scaffold import add_task_text, handler_for
from jobkit.errors import UsageError
from tests.support import ROOT, forget_package
from tests.support.projects import TEST_JOBS

STARTER = (ROOT / "jobkit" / "cli" / "starter" / "jobs.yaml").read_text()


@pytest.fixture
def empty_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """An empty folder to run in, with no JOBKIT_* variable, and no `tasks` package left imported afterwards."""
    monkeypatch.chdir(tmp_path)
    for name in ("JOBKIT_JOBS", "JOBKIT_SCHEDULES", "JOBKIT_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    # Not this checkout's folder: a developer who followed "Add a job" here has a `tasks` package in it.
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != ROOT])
    forget_package("tasks")
    yield tmp_path
    forget_package("tasks")


def added_lines(before: str, after: str) -> list[str]:
    diff = difflib.ndiff(before.splitlines(), after.splitlines())
    assert not [line for line in diff if line.startswith("- ")], "a line was changed or removed"
    return [line[2:] for line in difflib.ndiff(before.splitlines(), after.splitlines()) if line.startswith("+ ")]


def test_a_task_joins_a_block_style_file_after_the_last_task_and_before_the_next_sections_comment() -> None:
    after = add_task_text(STARTER, "video:process", "tasks.video:process", "low")

    assert added_lines(STARTER, after) == ["  video:process:", "    handler: tasks.video:process", "    queue: low"]
    lines = after.splitlines()
    at = lines.index("  video:process:")
    assert lines[at - 1] == "    timeout: 10m" and lines[at + 3].startswith("# Named read-only queries")


def test_a_task_joins_a_flow_style_file_in_its_style_and_indentation() -> None:
    text = TEST_JOBS.lstrip() + "# the end\n"

    after = add_task_text(text, "video:process", "tasks.video:process", None)

    assert added_lines(text, after) == ['  video:process: {handler: "tasks.video:process"}']
    assert after.endswith('  video:process: {handler: "tasks.video:process"}\n# the end\n')


def test_a_file_without_tasks_gets_a_tasks_section_and_a_declared_task_is_refused() -> None:
    text = "queues: {default: {weight: 1}}  # one queue\n"
    assert add_task_text(text, "a:b", "tasks.a:b", None) == text + "tasks:\n  a:b:\n    handler: tasks.a:b\n"
    with pytest.raises(UsageError, match=r"task 'email:send' is already declared at jobs.yaml:22"):
        add_task_text(STARTER, "email:send", "tasks.email:send", None)


def test_a_handler_path_comes_from_the_task_name() -> None:
    assert handler_for("video:process") == "tasks.video:process"
    assert handler_for("Video-Tools:re-encode:hd") == "tasks.video_tools:re_encode_hd"
    assert handler_for("resize") == "tasks.resize:run"
    assert handler_for("class:import") == "tasks.class_:import_"


def test_check_in_an_empty_folder_says_only_that_jobs_yaml_is_not_found(
    empty_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "jobs.yaml: file not found (run `jobkit init` to start a project in this folder, or name the project's folder "
        "with --project DIR or JOBKIT_PROJECT)"
    ]


def test_init_then_new_then_check_passes_and_the_stub_takes_any_payload(
    empty_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init"]) == 0
    assert main(["new", "video:process", "--queue", "low"]) == 0
    assert main(["check"]) == 0

    out = capsys.readouterr().out
    assert "jobs.yaml: ok (3 queues, 10 tasks)" in out and "schedules.yaml: ok (3 schedules)" in out
    written = sorted(str(p.relative_to(empty_folder)) for p in empty_folder.rglob("*") if p.is_file())
    assert written == [
        ".env.example", "jobs.yaml", "schedules.yaml", "tasks/__init__.py", "tasks/example.py", "tasks/video.py",
    ]  # fmt: skip
    assert "# Named read-only queries for export:process" in (empty_folder / "jobs.yaml").read_text()
    importlib.import_module("tasks.video").process(video_id=7, quality="720p")


def test_new_adds_a_second_stub_to_an_existing_module_and_refuses_what_cannot_be_right(
    empty_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init"]) == 0
    assert main(["new", "video:process", "--queue", "low"]) == 0
    assert main(["new", "video:thumbnail"]) == 0
    module = (empty_folder / "tasks" / "video.py").read_text()
    assert module.count("\ndef process(") == 1 and module.count("\ndef thumbnail(") == 1
    capsys.readouterr()

    assert main(["new", "video:process"]) == 1
    assert "task 'video:process' is already declared" in capsys.readouterr().err
    jobs = (empty_folder / "jobs.yaml").read_text()
    assert main(["new", "video:hd", "--queue", "lwo"]) == 1
    assert "--queue 'lwo': not a queue of jobs.yaml (did you mean 'low'?)" in capsys.readouterr().err
    assert (empty_folder / "jobs.yaml").read_text() == jobs
    assert main(["init"]) == 1
    assert "jobs.yaml already exists" in capsys.readouterr().err
