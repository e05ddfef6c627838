"""Results, cancel, archive and batch triggers through the API, with a worker running the tasks."""

from __future__ import annotations

from typing import Any

import dramatiq
import redis

from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support import uses_project, wait_for
from tests.support.http import Http
from tests.support.projects import LIFECYCLE_JOBS
from tests.support.tokens import bearer

project = uses_project(LIFECYCLE_JOBS)


def _task(http: Http, queue: str, task_id: str, role: str = "admin", sub: str = "admin") -> dict[str, Any]:
    response = http.get(f"/api/jobs/task/{queue}/{task_id}", headers=bearer(role, sub))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_batch_trigger_queues_each_payload_and_the_task_object_carries_its_result(
    http: Http, client: Client, worker: dramatiq.Worker
) -> None:
    response = http.post("/api/jobs/trigger/life:rows/batch", json=[{"n": 1}, {"n": 2}], headers=bearer("user", "7"))

    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["status"], body["task"], body["queue"], len(body["task_ids"])) == ("queued", "life:rows", "default", 2)
    for n, task_id in enumerate(body["task_ids"], start=1):
        assert client.lifecycle.result(task_id, "default", timeout=5) == {"rows": n}
        seen = _task(http, "default", task_id, "user", "7")  # its own tasks, result included
        assert (seen["state"], seen["result"], seen["triggered_by"]) == ("completed", {"rows": n}, "7")


def test_a_batch_with_one_bad_payload_queues_nothing_and_names_its_index(http: Http, client: Client) -> None:
    response = http.post(
        "/api/jobs/trigger/life:rows/batch", json=[{"n": 1}, {"rows": 2}, {"n": 3}], headers=bearer("admin")
    )

    assert response.status_code == 422, response.text
    assert "payload 1" in response.json()["detail"]
    assert Queues(client).stats("default").pending == 0
    too_many = http.post("/api/jobs/trigger/life:rows/batch", json=[{"n": 1}] * 10_001, headers=bearer("admin"))
    assert too_many.status_code == 422 and "1 to 10000 payloads" in too_many.json()["detail"]
    empty = http.post("/api/jobs/trigger/life:rows/batch", json=[], headers=bearer("admin"))
    assert empty.status_code == 422


def test_cancel_a_running_task_through_the_api(
    http: Http, client: Client, worker: dramatiq.Worker, redis_client: redis.Redis, namespace: str
) -> None:
    key = f"{namespace}:api-nap"
    ref = client.dispatch("life:nap_loop", key=key)
    wait_for(lambda: redis_client.llen(f"{key}:started"), what="the task to start")
    wait_for(lambda: _task(http, "default", ref.id)["state"] == "active", what="it to show as active")

    response = http.post(f"/api/jobs/task/default/{ref.id}/cancel", headers=bearer("admin", "ops-anna"))

    assert response.status_code == 200, response.text
    assert response.json() == {"queue": "default", "task_id": ref.id, "previous_state": "active", "status": "canceling"}
    final = wait_for(lambda: (t := _task(http, "default", ref.id))["state"] == "archived" and t, what="archived")
    assert (final["canceled_by"], final["retried"], final["result"]) == ("ops-anna", 0, None)
    again = http.post(f"/api/jobs/task/default/{ref.id}/cancel", headers=bearer("admin"))
    assert again.status_code == 409, again.text
    assert http.post("/api/jobs/task/default/nope/cancel", headers=bearer("admin")).status_code == 404


def test_archive_one_task_through_the_api(http: Http, client: Client) -> None:
    ref = client.dispatch("life:rows", n=1, delay=300)

    response = http.post(f"/api/jobs/task/default/{ref.id}/archive", headers=bearer("admin"))

    assert response.status_code == 200, response.text
    assert response.json()["previous_state"] == "scheduled"
    assert _task(http, "default", ref.id)["state"] == "archived"
    assert http.post(f"/api/jobs/task/default/{ref.id}/archive", headers=bearer("admin")).status_code == 409


def test_a_results_sensitive_fields_are_masked_for_every_role(
    http: Http, client: Client, worker: dramatiq.Worker
) -> None:
    response = http.post("/api/jobs/trigger/life:secret", json={"token": "tok-991"}, headers=bearer("user", "5"))
    task_id = response.json()["task_id"]
    client.lifecycle.result(task_id, "default", timeout=5)
    for role, sub in (("admin", "admin"), ("viewer", "v"), ("user", "5")):
        seen = _task(http, "default", task_id, role, sub)
        assert seen["result"] == {"token": "***", "ok": True}, role
        assert "tok-991" not in str(seen)
