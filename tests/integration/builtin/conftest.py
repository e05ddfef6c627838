"""Fixtures for the built-in tasks: a project declaring them (fast retries) and a database of posts: SQLite, or
PostgreSQL / MariaDB for a test parametrised with ``@pytest.mark.parametrize("database", KINDS, indirect=True)``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from jobkit.config.settings import Settings
from tests.support import uses_project
from tests.support.databases import Database, Kind, fill_posts, make_database
from tests.support.projects import BUILTIN_JOBS

project = uses_project(BUILTIN_JOBS)


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    kind: Kind = getattr(request, "param", "sqlite")
    postgres = request.getfixturevalue("postgres_server") if kind == "postgresql" else None
    mariadb = request.getfixturevalue("mariadb_server") if kind == "mariadb" else None
    with make_database(kind, tmp_path, postgres, mariadb) as made:
        fill_posts(made)
        yield made


@pytest.fixture
def settings(settings: Settings, database: Database) -> Settings:
    return replace(settings, database_url=database.url)
