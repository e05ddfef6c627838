"""durability in jobs.yaml: per project (under defaults) or per task, async unless said otherwise."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from jobkit.config.jobs_file import load_project
from jobkit.errors import ConfigError


def test_durability_is_async_by_default_and_set_under_defaults_or_per_task(write_yaml: Callable[..., Path]) -> None:
    project = load_project(
        write_yaml(
            """
            queues: {default: {weight: 1}}
            defaults: {durability: replicated}
            tasks:
              a:safe: {handler: "tests.handlers:noop"}
              a:fast: {handler: "tests.handlers:noop", durability: async}
            """
        )
    )
    assert project.tasks["a:safe"].durability == "replicated"
    assert project.tasks["a:fast"].durability == "async"
    plain = load_project(
        write_yaml('queues: {default: {}}\ntasks: {a:b: {handler: "tests.handlers:noop"}}\n', "p.yaml")
    )
    assert plain.tasks["a:b"].durability == "async"


def test_an_unknown_durability_is_refused_with_its_place(write_yaml: Callable[..., Path]) -> None:
    path = write_yaml('queues: {default: {}}\ntasks:\n  a:b: {handler: "tests.handlers:noop", durability: replicatd}\n')
    column = path.read_text().splitlines()[2].index("replicatd") + 1
    with pytest.raises(ConfigError) as raised:
        load_project(path)
    assert str(raised.value) == (
        f"{path}:3:{column}: tasks.a:b.durability: unknown durability 'replicatd' (did you mean 'replicated'?)"
    )
