"""The operator CLI (SPEC §2) against a real Redis: output, exit codes 0 / 1 (message on stderr) / 2 (usage)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from jobkit.cli import main
from jobkit.config.settings import Settings
from jobkit.services.auth import Revocations, verify_token
from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support import JOBKIT
from tests.support.cli import run
from tests.support.tokens import SECRET


def test_stats_prints_a_table_and_json(cli_env: None, client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    client.dispatch("test:greet", name="Ann")

    code, table, _ = run(capsys, "stats")
    assert code == 0
    assert all(queue in table for queue in ("critical", "default", "low"))
    assert "Redis memory: jobkit " in table and ":default.msgs" in table  # the largest key of the queue
    # No worker runs in this test: every task type is named as unserved, under the table.
    assert "no live worker serves: " in table and "test:greet (default)" in table.split("no live worker serves: ")[1]

    code, out, _ = run(capsys, "stats", "--json")
    answer = json.loads(out)
    queues = {row["queue"]: row for row in answer["queues"]}
    assert code == 0 and queues["default"]["pending"] == 1 and queues["low"]["size"] == 0
    assert answer["memory"]["jobkit_bytes"] > 0
    assert "test:greet" in answer["unserved_tasks"]


def test_pause_resume_tasks_task_retry_delete(
    cli_env: None, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    queues = Queues(client)
    assert run(capsys, "pause", "low")[0] == 0 and queues.stats("low").paused
    assert run(capsys, "resume", "low")[0] == 0 and not queues.stats("low").paused

    later = client.dispatch("test:greet", name="Ann", delay=3600)
    code, out, _ = run(capsys, "tasks", "default", "--state", "scheduled", "--json")
    assert code == 0 and [t["id"] for t in json.loads(out)["tasks"]] == [later.id]
    code, out, _ = run(capsys, "task", "default", later.id)
    assert code == 0 and json.loads(out)["state"] == "scheduled"

    assert run(capsys, "retry", "default", later.id)[0] == 0
    assert queues.task("default", later.id).state == "pending"
    assert run(capsys, "delete", "default", later.id)[0] == 0
    assert queues.stats("default").size == 0


def test_search_finds_tasks_across_queues_and_states(
    cli_env: None, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    later = client.dispatch("test:greet", name="Bartholomew", delay=3600)
    now = client.dispatch("test:greet", name="bartholomew junior")
    client.dispatch("test:greet", name="someone else")

    code, out, _ = run(capsys, "search", "BARTHOLOMEW", "--json")
    assert code == 0 and {t["id"]: t["state"] for t in json.loads(out)["tasks"]} == {
        later.id: "scheduled", now.id: "pending"
    }  # fmt: skip
    code, out, _ = run(capsys, "search", "bartholomew", "--state", "scheduled", "--queue", "default,low", "--json")
    assert code == 0 and [t["id"] for t in json.loads(out)["tasks"]] == [later.id]
    code, out, _ = run(capsys, "search", "bartholomew", "--limit", "1", "--json")
    assert code == 0 and len(json.loads(out)["tasks"]) == 1

    code, table, _ = run(capsys, "search", "bartholomew")
    assert code == 0 and "2 task(s) matching 'bartholomew'" in table and later.id in table and "scheduled" in table
    code, _, err = run(capsys, "search", "x", "--state", "archive")
    assert code == 1 and "did you mean 'archived'" in err


def test_a_payload_that_looks_like_rich_markup_is_shown_as_text(
    cli_env: None, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    # A user token can plant any text in a payload; the operator's table shows it as written (it was a crash)
    client.dispatch("test:greet", name="[/bold] markup [red]x[/red]", delay=3600)

    code, table, err = run(capsys, "search", "markup")
    assert (code, err) == (0, "") and "[/bold] markup [red]x[/red]" in table
    code, table, err = run(capsys, "tasks", "default", "--state", "scheduled")
    assert (code, err) == (0, "")


def test_user_errors_exit_1_with_the_message_on_stderr(cli_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "pause", "lwo")
    assert (code, out) == (1, "")
    assert "unknown queue 'lwo' (did you mean 'low'?)" in err

    code, _, err = run(capsys, "task", "default", "nope")
    assert code == 1 and "no task 'nope' in queue 'default'" in err

    code, _, err = run(capsys, "dispatch", "test:greet", "--payload", '{"nam": "Ann"}')
    assert code == 1 and "unknown payload field 'nam'" in err


def test_usage_errors_exit_2(cli_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["token", "--sub", "a", "--role", "root"])
    assert exited.value.code == 2


def test_token_lifetime_is_capped_and_a_token_can_be_revoked(
    cli_env: None, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "token", "--sub", "ops", "--role", "admin", "--ttl", "100000d")
    assert code == 1 and "ttl 100000d is longer than a token may live (30d" in err
    code, _, err = run(capsys, "token", "--sub", "ops", "--role", "admin", "--ttl", "99999999999d")
    assert code == 1 and "--ttl: '99999999999d' is out of range" in err and "Traceback" not in err
    code, out, err = run(capsys, "token", "--sub", "ops", "--role", "viewer", "--ttl", "30d")
    jti = verify_token(SECRET, out.strip()).jti
    assert code == 0 and f"token id {jti}" in err
    code, out, _ = run(capsys, "token", "revoke", jti)
    assert code == 0 and f"token {jti} revoked" in out
    assert Revocations(client.redis, client.keys).revoked(jti)


def test_token_mints_a_token_the_api_accepts(cli_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "token", "--sub", "ops", "--role", "user", "--ttl", "5m")

    claims = verify_token(SECRET, out.strip())
    assert code == 0 and (claims.sub, claims.role) == ("ops", "user")


def test_schedules_lists_entries_with_next_and_last_run(
    cli_env: None, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobkit.scheduling.dynamic import Schedules

    entry = Schedules(client).recurring("test:greet", {"name": "Ann"}, cron="0 9 * * MON")

    code, out, _ = run(capsys, "schedules")

    header, row = out.splitlines()[:2]
    columns = ["ID", "SPEC", "TZ", "TASK", "QUEUE", "SOURCE", "NEXT", "RUN", "LAST", "RUN", "SKIPPED"]
    assert code == 0 and header.split() == columns
    assert row.split()[:4] == [entry, "0", "9", "*"] and row.split()[-2:] == ["-", "0"]  # never fired, none skipped


def test_settings_never_show_the_redis_password() -> None:
    settings = Settings.from_env({"REDIS_URL": "redis://:s3cret@127.0.0.1:6379/0"}, dotenv=None)
    assert "s3cret" not in repr(settings)


def test_a_duration_past_any_bound_is_a_clear_error_in_every_command(
    cli_env: None, client: Client, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "dispatch", "test:greet", "--payload", '{"name": "a"}', "--delay", "99999999999d")
    assert code == 1 and "--delay: '99999999999d' is out of range" in err and "Traceback" not in err
    jobs = settings.jobs_path.read_text().replace("timeout: 10s", "timeout: 99999999999d")
    settings.jobs_path.write_text(jobs)
    code, _, err = run(capsys, "check")
    assert code == 1 and "defaults.timeout: expected a duration, found '99999999999d'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("flags", [["--json"], []])
def test_stats_into_a_pipe_whose_reader_has_left_exits_0_and_says_nothing(
    flags: list[str], env: dict[str, str], settings: Settings, client: Client, tmp_path: Path
) -> None:
    # `jobkit stats --json | head`: the reader is gone before jobkit writes (deterministically: closed beforehand)
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            [JOBKIT, "stats", *flags], stdout=write, stderr=subprocess.PIPE, text=True, timeout=60, check=False,
            env={**env, "JOBKIT_JOBS": str(settings.jobs_path)}, cwd=tmp_path,
        )  # fmt: skip
    finally:
        os.close(write)

    assert (result.returncode, result.stderr) == (0, "")
