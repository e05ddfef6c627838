"""`jobkit dispatch --payloads`, `jobkit cancel`, `jobkit archive` and what `jobkit task` shows of a task's end."""

from __future__ import annotations

import json
from pathlib import Path

import dramatiq
import pytest

from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support import uses_project
from tests.support.cli import run
from tests.support.projects import LIFECYCLE_JOBS

project = uses_project(LIFECYCLE_JOBS)


def test_dispatch_payloads_queues_one_task_per_line_and_task_shows_each_result(
    cli_env: None, client: Client, worker: dramatiq.Worker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = tmp_path / "rows.jsonl"
    lines.write_text('{"n": 1}\n\n{"n": 2}\n{"n": 3}\n')

    code, out, err = run(capsys, "dispatch", "life:rows", "--payloads", str(lines))

    assert code == 0, err
    ids = out.split()
    assert len(ids) == 3
    for n, task_id in enumerate(ids, start=1):
        assert client.lifecycle.result(task_id, "default", timeout=5) == {"rows": n}
        code, shown, _ = run(capsys, "task", "default", task_id)
        task = json.loads(shown)
        assert (task["state"], task["result"], task["canceled_by"]) == ("completed", {"rows": n}, None)


def test_a_bad_line_queues_nothing_and_names_the_line(
    cli_env: None, client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = tmp_path / "rows.jsonl"
    lines.write_text('{"n": 1}\n\n{"rows": 2}\n')
    code, _, err = run(capsys, "dispatch", "life:rows", "--payloads", str(lines))
    assert code == 1
    assert f"{lines}:3: " in err and "rows" in err
    assert Queues(client).stats("default").pending == 0

    lines.write_text('{"n": 1}\n[1]\n')
    code, _, err = run(capsys, "dispatch", "life:rows", "--payloads", str(lines))
    assert code == 1 and f"{lines}:2: expected a JSON object" in err
    lines.write_text('{"n": 1\n')
    code, _, err = run(capsys, "dispatch", "life:rows", "--payloads", str(lines))
    assert code == 1 and f"{lines}:1:" in err and "not JSON" in err
    assert Queues(client).stats("default").pending == 0


def test_cancel_and_archive_commands(cli_env: None, client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    later = client.dispatch("life:rows", n=1, delay=3600)
    other = client.dispatch("life:rows", n=2, delay=3600)

    code, out, _ = run(capsys, "cancel", "default", later.id)
    assert code == 0 and "(scheduled) canceled" in out
    code, out, _ = run(capsys, "archive", "default", other.id)
    assert code == 0 and "(scheduled) archived" in out

    code, shown, _ = run(capsys, "task", "default", later.id)
    task = json.loads(shown)
    assert task["state"] == "archived" and task["canceled_by"].startswith("cli")
    code, _, err = run(capsys, "cancel", "default", later.id)
    assert code == 1 and "only a task that has not finished" in err
