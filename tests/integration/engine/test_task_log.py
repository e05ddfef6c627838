"""The task log: one line per outcome, saying what happened, at the level it deserves."""

from __future__ import annotations

import logging
from dataclasses import replace

import dramatiq
import pytest
import redis

from jobkit.bootstrap import open_client
from jobkit.config.model import Project
from jobkit.config.settings import Settings
from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support import wait_for


def lines(caplog: pytest.LogCaptureFixture, task_id: str) -> list[tuple[str, str]]:
    return [
        (r.levelname, r.getMessage()) for r in caplog.records if r.name == "jobkit.tasks" and task_id in r.getMessage()
    ]


def test_each_outcome_logs_one_line_with_the_truth(
    client: Client, worker: dramatiq.Worker, redis_client: redis.Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jobkit.tasks")
    ok = client.dispatch("test:record", key=f"{namespace}:ok")
    flaky = client.dispatch("test:flaky", key=f"{namespace}:flaky", failures=1)
    exhausted = client.dispatch("test:always_fails", key=f"{namespace}:dead")
    permanent = client.dispatch("test:permanent", key=f"{namespace}:skip")
    queues = Queues(client)
    wait_for(lambda: queues.stats("default").archived == 2 and queues.stats("default").completed == 2, timeout=15)
    wait_for(lambda: len(lines(caplog, exhausted.id)) == 3, what="every attempt of the exhausted task logged")

    [(level, text)] = lines(caplog, ok.id)
    assert level == "DEBUG" and text.startswith(f"test:record {ok.id} done in ")

    first, last = lines(caplog, flaky.id)
    assert first[0] == "WARNING" and " failed in " in first[1]
    assert "(retry 1/3 in " in first[1] and first[1].endswith("RuntimeError: flaky failure number b'1'")
    assert last[0] == "DEBUG" and " done in " in last[1]

    attempts = lines(caplog, exhausted.id)
    assert [level for level, _ in attempts] == ["WARNING", "WARNING", "ERROR"]
    assert "(retry 1/2 in " in attempts[0][1] and "(retry 2/2 in " in attempts[1][1]
    assert " archived after 3 attempts in " in attempts[2][1]
    assert attempts[2][1].endswith("ConnectionError: attempt 3 failed")

    [(level, text)] = lines(caplog, permanent.id)
    assert level == "ERROR" and " archived (SkipRetry) in " in text
    assert text.endswith("SkipRetry: bad input, do not retry")
    assert not any("will retry" in r.getMessage() for r in caplog.records)


def test_jobkit_log_success_puts_successes_at_info(
    settings: Settings, project: Project, namespace: str, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jobkit.tasks")
    assert Settings.from_env({"JOBKIT_LOG_SUCCESS": "1"}, dotenv=None).log_successes
    client = open_client(replace(settings, log_successes=True), project)
    worker = dramatiq.Worker(client.broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        ref = client.dispatch("test:record", key=f"{namespace}:ok")
        wait_for(lambda: lines(caplog, ref.id), what="the line")
    finally:
        worker.stop(timeout=5_000)
    [(level, text)] = lines(caplog, ref.id)
    assert level == "INFO" and " done in " in text
