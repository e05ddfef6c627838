"""retention in jobs.yaml: how long (`retention: 24h`) and how many per queue (`retention: {for: 24h, max: 100}`),
each inherited from defaults on its own."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from jobkit.config.jobs_file import load_project
from jobkit.config.model import DEFAULT_RETENTION, DEFAULT_RETENTION_MAX


def test_retention_sets_an_age_a_count_or_both_and_each_is_inherited(write_yaml: Callable[..., Path]) -> None:
    project = load_project(
        write_yaml(
            """
            queues: {default: {weight: 1}}
            defaults: {retention: {for: 2h, max: 500}}
            tasks:
              a:inherits: {handler: "tests.handlers:noop"}
              a:shorter: {handler: "tests.handlers:noop", retention: 10m}
              a:fewer: {handler: "tests.handlers:noop", retention: {max: 10}}
              a:both: {handler: "tests.handlers:noop", retention: {for: 1s, max: 0}}
            """
        )
    )
    found = {name: (task.retention, task.retention_max) for name, task in project.tasks.items()}
    assert found == {
        "a:inherits": (timedelta(hours=2), 500),
        "a:shorter": (timedelta(minutes=10), 500),
        "a:fewer": (timedelta(hours=2), 10),
        "a:both": (timedelta(seconds=1), 0),
    }


def test_without_retention_a_task_keeps_a_day_and_at_most_ten_thousand(write_yaml: Callable[..., Path]) -> None:
    project = load_project(write_yaml('queues: {default: {}}\ntasks: {a:b: {handler: "tests.handlers:noop"}}\n'))
    assert (project.tasks["a:b"].retention, project.tasks["a:b"].retention_max) == (DEFAULT_RETENTION, 10_000)
    assert DEFAULT_RETENTION_MAX == 10_000
