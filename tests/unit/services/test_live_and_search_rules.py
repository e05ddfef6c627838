"""The pure rules of live updates and search: how counts move between samples, and when a shown task matches."""

from __future__ import annotations

from dataclasses import replace

from jobkit.services.events import _changes
from jobkit.services.queues import QueueStats, TaskInfo
from jobkit.services.search import fold, matches

IDLE = QueueStats(
    queue="default", pending=0, active=0, scheduled=0, retry=0, archived=0, completed=0, paused=False, size=0,
    latency_ms=0, processed=0, failed=0, processed_total=0, failed_total=0,
)  # fmt: skip
TASK = TaskInfo(
    id="3f0c5a2e-8d0b-4c1e-9a57-0d6f1b8e2c11", queue="default", task="email:send", state="archived",
    payload={"to": "Ann@Example.com", "token": "***", "items": [{"sku": "KUMQUAT-7"}], "count": 4242, "ok": True},
    retried=1, max_retries=3, last_error="ConnectionError: SMTP host refused", last_failed_at=None,
    next_process_at=None, completed_at=None, enqueued_at=None,
)  # fmt: skip


def test_changes_name_only_the_counts_that_moved() -> None:
    low = replace(IDLE, queue="low")
    busier = replace(IDLE, pending=3, active=1, processed_total=5, failed_total=1, latency_ms=900)
    assert _changes([IDLE, low], [busier, low]) == [
        {"queue": "default", "pending": 3, "active": 1, "processed": 5, "failed": 1}
    ]
    assert _changes([IDLE], [replace(IDLE, latency_ms=5)]) == []  # latency alone is not a change of state
    assert _changes([IDLE], [replace(IDLE, paused=True)]) == [{"queue": "default", "paused": True}]
    assert _changes([IDLE], [replace(IDLE, queue="new")]) == []  # a queue with no previous sample


def test_a_task_matches_by_id_prefix_type_error_and_payload_as_shown() -> None:
    for text in ("3f0c5a", "email:s", "smtp host", "ann@example", "kumquat-7", "4242", "sku", "items"):
        assert matches(TASK, fold(text)), text
    for text in ("8d0b", "secret", "true", "tok3n"):
        assert not matches(TASK, fold(text)), text
    assert matches(TASK, "")
    assert fold("ÉCOLE Ünï") == "École Ünï"  # only ASCII letters fold, as the Lua script does
