"""`jobkit check` refuses mail settings that cannot work, naming the variable (no Redis needed: check reads files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobkit.cli import main
from tests.support import ROOT


@pytest.fixture
def check_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name in ("MAIL_MAILER", "SENDGRID_API_KEY", "SENDGRID_API_URL", "SENDGRID_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JOBKIT_JOBS", str(ROOT / "jobs.yaml"))
    monkeypatch.setenv("JOBKIT_SCHEDULES", str(tmp_path / "none.yaml"))


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"MAIL_MAILER": "sendgird"}, "jobkit: MAIL_MAILER='sendgird': expected file, smtp or sendgrid (did you mean "
                                      "'sendgrid'?)"),
        ({"MAIL_MAILER": "sendgrid"}, "jobkit: MAIL_MAILER=sendgrid needs SENDGRID_API_KEY: set it to a SendGrid API "
                                      "key with the Mail Send permission"),
    ],
)  # fmt: skip
def test_check_refuses_an_unknown_mailer_or_a_missing_key_naming_the_variable(
    check_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    error: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    code = main(["check"])

    out, err = capsys.readouterr()
    assert (code, out, err.strip()) == (1, "", error)


def test_check_passes_with_sendgrid_and_a_key_and_never_prints_the_key(
    check_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MAIL_MAILER", "sendgrid")
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.check-key.very-secret")

    code = main(["check"])

    out, err = capsys.readouterr()
    assert code == 0 and "jobs.yaml: ok" in out
    assert "very-secret" not in out + err
