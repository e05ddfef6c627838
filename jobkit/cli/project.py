"""Which project a ``jobkit`` command runs in, and the loaders every command shares.

Like git, ``jobkit`` works from any folder: ``--project DIR`` (or ``JOBKIT_PROJECT``) names the project folder, and
otherwise the nearest folder upwards from the working directory that holds a ``jobs.yaml`` is the project (unless
``JOBKIT_JOBS`` says where the file is). The command then runs in that folder, so everything relative reads as it
does there: ``.env``, ``jobs.yaml``, ``schedules.yaml``, the data dir (``var/``, the embedded Redis's socket and the
secret), and handler modules imported from the working directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

from jobkit.config.jobs_file import load_project
from jobkit.config.model import Project, ScheduleFile
from jobkit.config.schedules_file import load_schedules
from jobkit.config.settings import Settings
from jobkit.errors import UsageError
from jobkit.services.auth import sealing_secrets

__all__ = ["enter_project", "find_project", "load_settings", "project_of", "schedule_file"]

JOBS_FILE = "jobs.yaml"


def find_project(start: Path, explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    """The project folder for a command started in ``start``: ``explicit`` (``--project``), else
    ``JOBKIT_PROJECT``, else the nearest folder from ``start`` upwards with a jobs.yaml; None means ``start`` itself
    (it has a jobs.yaml, ``JOBKIT_JOBS`` names the file, or there is no project at all)."""
    named, source = (explicit, "--project") if explicit else (environ.get("JOBKIT_PROJECT", "").strip(), "")
    if named:
        folder = (start / named).resolve()
        if not folder.is_dir():
            where = source or "JOBKIT_PROJECT"
            raise UsageError(f"{where} {named!r}: no such folder (it should hold the project's jobs.yaml)")
        return folder
    if (start / JOBS_FILE).exists() or environ.get("JOBKIT_JOBS", "").strip():
        return None
    if (start / ".env").is_file() and dotenv_values(start / ".env").get("JOBKIT_JOBS"):
        return None
    for folder in start.resolve().parents:
        if (folder / JOBS_FILE).is_file():
            return folder
    return None


def enter_project(explicit: str | None) -> None:
    """Run the rest of the command in the project's folder (see :func:`find_project`); the processes it starts
    inherit the folder, and ``JOBKIT_PROJECT`` as an absolute path (a relative one would not mean the same there)."""
    folder = find_project(Path.cwd(), explicit, os.environ)
    if folder is not None:
        os.chdir(folder)
        os.environ["JOBKIT_PROJECT"] = str(folder)


def load_settings() -> Settings:
    return Settings.from_env()


def project_of(settings: Settings) -> Project:
    """jobs.yaml, checked (handlers imported) as the workers will load it."""
    return load_project(settings.jobs_path, sealing_key=bool(sealing_secrets(settings)))


def schedule_file(settings: Settings, project: Project | None) -> ScheduleFile | None:
    """schedules.yaml checked against ``project``; None when the file does not exist (nothing is scheduled)."""
    if not settings.schedules_path.exists():
        return None
    return load_schedules(settings.schedules_path, project)
