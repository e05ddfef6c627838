"""Whatever durations and sizes jobs.yaml holds, loading it gives a project or FILE:LINE:COL problems, never a
traceback."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from jobkit.config.jobs_file import load_project
from jobkit.errors import ConfigError

UNITS = st.sampled_from(["", "ms", "s", "m", "h", "d", "KiB", "MiB", "MB", "GiB", "x", " "])
NUMBERS = st.one_of(st.integers(min_value=-(10**30), max_value=10**30).map(str), st.floats(allow_nan=True).map(str))
VALUES = st.one_of(st.builds(lambda n, u: f"{n}{u}", NUMBERS, UNITS), st.text(max_size=12), st.integers().map(str))
TEMPLATE = """
queues: {{default: {{weight: 1}}}}
max_payload: "{size}"
defaults: {{timeout: "{timeout}", retention: "{retention}", backoff: {{min: "{low}", max: "{high}"}}}}
tasks:
  t:noop: {{handler: "tests.handlers:noop", unique: "{unique}", max_payload: "{size2}"}}
"""


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


@settings(max_examples=200, deadline=None)
@given(timeout=VALUES, retention=VALUES, low=VALUES, high=VALUES, unique=VALUES, size=VALUES, size2=VALUES)
def test_random_durations_and_sizes_load_or_are_reported_never_a_traceback(**values: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "jobs.yaml"
        path.write_text(TEMPLATE.format(**{name: _quoted(value) for name, value in values.items()}))
        try:
            project = load_project(path)
        except ConfigError as exc:
            assert exc.problems and all(str(p).startswith(str(path) + ":") for p in exc.problems)
        else:
            assert project.tasks["t:noop"].max_payload >= 1
