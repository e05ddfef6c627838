"""The SQL jobkit hands each driver: the :named parameters the request was checked against, in the driver's style."""

from __future__ import annotations

import pytest

from jobkit.builtin.database import driver_sql, query_parameters, scrub
from jobkit.config.settings import Settings

SQL = "SELECT ':nope', \"x:y\", a::int FROM t -- :comment\nWHERE a = :a AND b LIKE '10%' AND c = :b /* :c */"


def test_query_parameters_are_those_outside_literals_names_and_comments() -> None:
    assert query_parameters(SQL) == {"a", "b"}


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_pyformat_drivers_get_the_same_parameters_and_doubled_percent_signs(kind: str) -> None:
    assert driver_sql(SQL, kind) == (
        "SELECT ':nope', \"x:y\", a::int FROM t -- :comment\nWHERE a = %(a)s AND b LIKE '10%%' AND c = %(b)s /* :c */"
    )


def test_sqlite_takes_named_parameters_as_written() -> None:
    assert driver_sql(SQL, "sqlite") == SQL


def test_scrub_removes_the_password_as_written_and_decoded() -> None:
    settings = Settings(database_url="postgresql://app:p%40ss@db/app")
    assert scrub("auth failed for p@ss and p%40ss", settings) == "auth failed for *** and ***"
