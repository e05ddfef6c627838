"""Running the ``jobkit`` command in this process, for the CLI tests."""

from __future__ import annotations

import pytest

from jobkit.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``jobkit ARGV…``: its exit code, stdout and stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
