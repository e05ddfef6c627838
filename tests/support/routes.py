"""The API's routes, by the role each needs, with a body each accepts: for the auth and the Redis-down tests."""

from __future__ import annotations

from typing import Any

Route = tuple[str, str, Any]

#: The fields of the API's task object (SPEC §5).
TASK_FIELDS = {
    "id", "queue", "task", "state", "payload", "retried", "max_retries", "last_error", "last_failed_at",
    "next_process_at", "completed_at", "enqueued_at", "triggered_by", "result", "canceled_by", "progress",
}  # fmt: skip
READ_ROUTES: list[Route] = [
    ("GET", "/api/jobs/stats", None),
    ("GET", "/api/jobs/queue/default", None),
    ("GET", "/api/jobs/history?days=3", None),
    ("GET", "/api/jobs/queue/default/tasks?state=pending", None),
    ("GET", "/api/jobs/task/default/nope", None),
    ("GET", "/api/jobs/schedules", None),
    ("GET", "/api/jobs/limits/test:greet", None),
    ("GET", "/api/system/workers", None),
    ("GET", "/api/system/redis", None),
    ("GET", "/api/system/task-types", None),
    ("GET", "/api/jobs/search?q=x&queue=default&state=pending,retry", None),
]
ADMIN_ROUTES: list[Route] = [
    ("PUT", "/api/jobs/queue/low/pause", None),
    ("PUT", "/api/jobs/queue/low/resume", None),
    ("DELETE", "/api/jobs/queue/low/pending", None),
    ("POST", "/api/jobs/queue/low/archive-pending", None),
    ("DELETE", "/api/jobs/task/default/nope", None),
    ("POST", "/api/jobs/retry", {"queue": "default", "task_id": "nope"}),
    ("POST", "/api/jobs/schedules", {"task": "test:greet", "payload": {"name": "a"}, "every": "1h"}),
    ("DELETE", "/api/jobs/schedules/nope", None),
    ("POST", "/api/jobs/task/default/nope/cancel", None),
    ("POST", "/api/jobs/task/default/nope/archive", None),
    ("POST", "/api/jobs/queue/low/tasks/bulk", {"action": "archive", "state": "pending"}),
]
USER_ROUTES: list[Route] = [
    ("POST", "/api/jobs/trigger/email", {"to": "a@b.co", "subject": "s", "body": "b"}),
    ("POST", "/api/jobs/trigger/export", {"export_type": "csv", "export": "posts_by_user"}),
    ("POST", "/api/jobs/trigger/test:greet", {"name": "Ann"}),
    ("POST", "/api/jobs/trigger/test:greet/batch", [{"name": "Ann"}, {"name": "Bo"}]),
]
