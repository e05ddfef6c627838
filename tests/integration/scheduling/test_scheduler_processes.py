"""Three `jobkit scheduler` processes, one killed -9 midway: every fire time enqueued exactly once, with no gap.

An ``@every 1s`` entry gives a fire per second, so a dozen seconds show the claims shared by three processes before
and after the kill. Cron minutes are shown the same way on a fake clock (``test_cron_across_schedulers.py``), so
this test need not run past a minute boundary."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import cast

import pytest
import redis
from dramatiq.message import Message

from tests.support import ROOT, wait_for
from tests.support.projects import TEST_JOBS

pytestmark = pytest.mark.slow

JOBKIT = str(Path(sys.executable).parent / "jobkit")
RUN_SECONDS = 12


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def fires(client: redis.Redis, namespace: str, schedule_id: str) -> Counter[int]:
    """How many messages were enqueued for each nominal fire time (ms) of ``schedule_id``."""
    counts: Counter[int] = Counter()
    for raw in cast(list[bytes], client.hvals(f"{namespace}:low.msgs")):
        message = Message.decode(raw)
        if message.options.get("schedule_id") == schedule_id:
            counts[int(datetime.fromisoformat(message.options["scheduled_at"]).timestamp() * 1000)] += 1
    return counts


def test_three_schedulers_fire_every_nominal_time_exactly_once_even_when_one_is_killed(
    redis_url: str, namespace: str, tmp_path: Path, redis_client: redis.Redis, processes: list[subprocess.Popen[str]]
) -> None:
    # Given three identical schedulers with an @every 1s entry
    (tmp_path / "jobs.yaml").write_text(TEST_JOBS)
    (tmp_path / "schedules.yaml").write_text("schedules:\n  second: {cron: '@every 1s', task: test:noop}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "JOBKIT_")) and k != "PYTHONPATH"}
    env.update(
        REDIS_URL=redis_url,
        JOBKIT_NAMESPACE=namespace,
        JOBKIT_JOBS=str(tmp_path / "jobs.yaml"),
        JOBKIT_SCHEDULES=str(tmp_path / "schedules.yaml"),
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    logs = [tmp_path / f"scheduler{i}.log" for i in range(3)]
    for log in logs:
        processes.append(
            subprocess.Popen(
                [JOBKIT, "scheduler"], env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
                text=True, start_new_session=True,
            )
        )  # fmt: skip
    wait_for(lambda: all("entries from files" in log.read_text() for log in logs), timeout=30, what="3 schedulers")
    started = time.time()

    # When they run 12 s and one of them is killed -9 halfway
    wait_for(lambda: time.time() - started > RUN_SECONDS / 2, timeout=RUN_SECONDS, interval=0.5)
    os.killpg(processes[0].pid, signal.SIGKILL)
    processes[0].wait()
    wait_for(lambda: time.time() - started > RUN_SECONDS, timeout=RUN_SECONDS, interval=0.5)
    for process in processes[1:]:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0

    # Then every nominal second is there exactly once, with no gap, before and after the kill
    seconds = fires(redis_client, namespace, "second")
    assert seconds, "nothing fired"
    assert max(seconds.values()) == 1, [t for t, n in seconds.items() if n > 1]
    first, last = min(seconds), max(seconds)
    assert sorted(seconds) == list(range(first, last + 1000, 1000))
    assert (last - first) / 1000 >= RUN_SECONDS - 5

    # And the three processes really shared the work (each enqueued some)
    enqueued = [log.read_text().count("enqueued for") for log in logs]
    assert sum(enqueued) == len(seconds)
    assert sum(1 for n in enqueued if n > 0) >= 2
