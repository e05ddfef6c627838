"""`jobkit check` on the files alone (no Redis): sensitive fields need a key."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobkit.cli import main

JOBS = """
queues: {default: {weight: 1}}
tasks:
  user:notify: {handler: "tests.handlers:record", sensitive: [value]}
"""


def test_sensitive_fields_without_an_encryption_key_are_refused_at_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "jobs.yaml").write_text(JOBS.lstrip())
    monkeypatch.chdir(tmp_path)
    for name in ("JOBKIT_SECRET", "JOBKIT_ENCRYPTION_KEY", "JOBKIT_JOBS", "JOBKIT_SCHEDULES", "JOBKIT_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)

    assert main(["check"]) == 1
    err = capsys.readouterr().err
    assert "jobs.yaml:3:62: tasks.user:notify.sensitive: no encryption key to seal these fields with" in err
    assert "(set JOBKIT_ENCRYPTION_KEY, or JOBKIT_SECRET (`jobkit up` makes one))" in err

    monkeypatch.setenv("JOBKIT_ENCRYPTION_KEY", "a-passphrase-long-enough-to-be-a-key")
    assert main(["check"]) == 0
