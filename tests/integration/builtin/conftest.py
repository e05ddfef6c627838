"""Fixtures for the built-in tasks: a project declaring them (fast retries) and a SQLite database of posts."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from jobkit.config.settings import Settings
from tests.support import uses_project
from tests.support.projects import BUILTIN_JOBS, POSTS

project = uses_project(BUILTIN_JOBS)


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute(
            "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER, title TEXT, created_at TEXT, score REAL)"
        )
        connection.executemany("INSERT INTO posts VALUES (?, ?, ?, ?, ?)", POSTS)
    return path


@pytest.fixture
def settings(settings: Settings, database: Path) -> Settings:
    return replace(settings, database_url=f"sqlite:///{database}")
