"""The CLI finds its project from any folder, as git does: --project DIR, JOBKIT_PROJECT, or the nearest folder
upwards that holds a jobs.yaml; the command then runs there (its .env, files, data dir and secret)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobkit.cli import main
from jobkit.cli.project import find_project
from jobkit.config.settings import Settings
from jobkit.errors import UsageError
from jobkit.services.auth import ensure_secret, verify_token

JOBS = "queues: {default: {weight: 1}}\ntasks:\n  a:b: {handler: 'jobkit.builtin.health:health_check'}\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with a jobs.yaml and the secret `jobkit up` writes; no JOBKIT_* variable set."""
    for name in [n for n in os.environ if n.startswith("JOBKIT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("JOBKIT_PROJECT", "")  # restored (removed) afterwards, whatever the command sets
    folder = tmp_path / "proj"
    (folder / "a" / "b").mkdir(parents=True)
    (folder / "jobs.yaml").write_text(JOBS)
    ensure_secret(Settings(data_dir=folder / "var"))
    return folder


def secret(project: Path) -> str:
    return (project / "var" / "secret").read_text().strip()


def test_the_project_is_the_flag_the_variable_or_the_nearest_folder_upwards(project: Path, tmp_path: Path) -> None:
    deep = project / "a" / "b"
    assert find_project(deep, None, {}) == project.resolve()
    assert find_project(project, None, {}) is None  # it is here already
    assert find_project(deep, None, {"JOBKIT_JOBS": "/etc/jobs.yaml"}) is None  # the file is named
    assert find_project(tmp_path, "proj", {}) == project.resolve()
    assert find_project(tmp_path, None, {"JOBKIT_PROJECT": str(project)}) == project.resolve()
    assert find_project(tmp_path, None, {}) is None
    with pytest.raises(UsageError, match=r"--project 'nope': no such folder"):
        find_project(tmp_path, "nope", {})


def test_token_works_from_a_subfolder_and_from_anywhere_with_project_or_jobkit_project(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(project / "a" / "b")
    assert main(["token", "--sub", "ops", "--role", "viewer"]) == 0
    assert verify_token(secret(project), capsys.readouterr().out.strip()).sub == "ops"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["--project", str(project), "token", "--sub", "ops", "--role", "viewer"]) == 0
    assert verify_token(secret(project), capsys.readouterr().out.strip()).role == "viewer"
    assert os.environ["JOBKIT_PROJECT"] == str(project.resolve())  # what the processes it starts inherit

    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("JOBKIT_PROJECT", "../proj")
    assert main(["check"]) == 0
    assert capsys.readouterr().out.startswith("jobs.yaml: ok (1 queues, 1 tasks)")


def test_with_no_project_anywhere_token_says_where_it_looked(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    assert main(["token", "--sub", "ops", "--role", "viewer"]) == 1
    assert f"no secret to sign with in {elsewhere.resolve() / 'var'}: set JOBKIT_SECRET" in capsys.readouterr().err
