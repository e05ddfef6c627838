"""The loaders every ``jobkit`` command shares: the settings, jobs.yaml and schedules.yaml."""

from __future__ import annotations

from jobkit.config.jobs_file import load_project
from jobkit.config.model import Project, ScheduleFile
from jobkit.config.schedules_file import load_schedules
from jobkit.config.settings import Settings
from jobkit.services.auth import sealing_secrets

__all__ = ["load_settings", "project_of", "schedule_file"]


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
