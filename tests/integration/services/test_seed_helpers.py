"""The README's table of the seed's helpers: every jobkit call it lists is a Queues method that does what the seed's
helper does, against a real Redis and a worker."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import dramatiq
import redis

from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support import ROOT, uses_project, wait_for
from tests.support.projects import LIFECYCLE_JOBS

project = uses_project(LIFECYCLE_JOBS)

#: What SPEC §4 says jobkit.queues() offers.
SPEC_METHODS = {
    "list", "stats", "all_stats", "pause", "resume", "delete_all_pending", "archive_all_pending", "tasks", "task",
    "retry", "delete", "archive", "cancel",
}  # fmt: skip


def _table_methods() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### The seed's helpers in jobkit", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"\| `jobkit\.queues\(\)\.(\w+)\(", section)


def test_the_table_lists_every_method_spec_names() -> None:
    listed = _table_methods()
    assert len(listed) == len(set(listed)) == 13
    assert set(listed) == SPEC_METHODS


def test_every_listed_call_does_what_the_seed_helper_does(
    client: Client, worker: dramatiq.Worker, redis_client: redis.Redis, namespace: str
) -> None:
    q = Queues(client)
    called: set[str] = set()

    def call(name: str, *args: object, **kwargs: object) -> Any:
        assert name in _table_methods(), name
        called.add(name)
        return getattr(q, name)(*args, **kwargs)

    assert call("list") == ["default", "low"]
    done = client.dispatch("life:rows", n=1)
    done.result(timeout=5)
    assert call("stats", "default").completed == 1
    assert [s.queue for s in call("all_stats")] == ["default", "low"]

    call("pause", "low")
    assert q.stats("low").paused
    waiting = [client.dispatch("life:step", n=n) for n in range(3)]
    assert call("delete_all_pending", "low") == 3
    waiting = [client.dispatch("life:step", n=n) for n in range(2)]
    assert call("archive_all_pending", "low") == 2
    total, archived = call("tasks", "low", "archived")
    assert total == 2 and {t.id for t in archived} == {ref.id for ref in waiting}
    call("resume", "low")
    assert not q.stats("low").paused

    assert call("task", "default", done.id).result == {"rows": 1}
    assert call("retry", "low", waiting[0].id) == "archived"
    assert waiting[0].result(timeout=5) == {"rows": 0}
    assert call("delete", "low", waiting[1].id) == "archived"

    later = client.dispatch("life:rows", n=2, delay=timedelta(minutes=5))
    assert call("archive", "default", later.id) == "scheduled"
    key = f"{namespace}:seed-nap"
    running = client.dispatch("life:nap_loop", key=key)
    wait_for(lambda: q.task("default", running.id).state == "active", what="the task to run")
    assert call("cancel", "default", running.id) == "active"
    wait_for(lambda: q.task("default", running.id).canceled_by == "python", what="it to end canceled")

    assert called == set(_table_methods())
