"""Every route of SPEC §5 through Litestar's test client on a real Redis: success, auth, and each error code."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import jwt
import pytest

from jobkit.services.client import Client
from jobkit.services.queues import Queues
from tests.support.http import Http, is_error
from tests.support.routes import ADMIN_ROUTES, READ_ROUTES, TASK_FIELDS, USER_ROUTES
from tests.support.tokens import SECRET, bearer

STATS_FIELDS = {
    "queue", "pending", "active", "scheduled", "retry", "archived", "completed", "paused", "size", "latency_ms",
    "processed", "failed", "processed_total", "failed_total",
}  # fmt: skip


def call(http: Http, method: str, url: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    return http.request(method, url, json=body, headers=headers or {})


# -- authentication ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "url", "body"), READ_ROUTES + ADMIN_ROUTES + USER_ROUTES)
def test_every_jobs_route_refuses_a_missing_bad_or_expired_token(http: Http, method: str, url: str, body: Any) -> None:
    is_error(call(http, method, url, body), 401, "missing bearer token")
    is_error(call(http, method, url, body, bearer(secret="another-secret-" + "y" * 40)), 401, "invalid token")
    expired = jwt.encode({"sub": "a", "role": "admin", "exp": int(time.time()) - 5}, SECRET, algorithm="HS256")
    is_error(call(http, method, url, body, {"Authorization": f"Bearer {expired}"}), 401, "expired")
    is_error(call(http, method, url, body, {"Authorization": "Basic YWRtaW46YWRtaW4="}), 401)


def test_tokens_with_alg_none_or_an_unknown_role_are_refused(http: Http) -> None:
    # "" is the key pyjwt's types allow for alg none (mypy refuses None once cryptography is installed)
    unsigned = jwt.encode({"sub": "a", "role": "admin", "exp": int(time.time()) + 60}, "", algorithm="none")
    is_error(http.get("/api/jobs/stats", headers={"Authorization": f"Bearer {unsigned}"}), 401)
    root = jwt.encode({"sub": "a", "role": "root", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    is_error(http.get("/api/jobs/stats", headers={"Authorization": f"Bearer {root}"}), 401)
    no_exp = jwt.encode({"sub": "a", "role": "admin"}, SECRET, algorithm="HS256")
    is_error(http.get("/api/jobs/stats", headers={"Authorization": f"Bearer {no_exp}"}), 401)


@pytest.mark.parametrize(("method", "url", "body"), USER_ROUTES)
def test_a_user_token_may_trigger(http: Http, user: dict[str, str], method: str, url: str, body: Any) -> None:
    response = call(http, method, url, body, user)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"


# -- stats, queues ---------------------------------------------------------------------------------------------------
def test_stats_lists_every_queue_with_the_spec_fields(http: Http, admin: dict[str, str], client: Client) -> None:
    client.dispatch("test:greet", name="Ann")
    body = http.get("/api/jobs/stats", headers=admin).json()
    assert [q["queue"] for q in body["queues"]] == ["critical", "default", "low"]
    default = body["queues"][1]
    assert set(default) == STATS_FIELDS and default["pending"] == 1 and default["size"] == 1
    memory = body["memory"]  # beside the SPEC's fields: Redis memory and jobkit's share per queue
    assert memory["used_memory"] > memory["jobkit_bytes"] > 0
    assert [q["queue"] for q in memory["queues"]] == ["critical", "default", "low"]
    assert memory["queues"][1]["largest_key"].endswith(":default.msgs")

    one = http.get("/api/jobs/queue/default", headers=admin)
    assert one.status_code == 200 and one.json()["pending"] == 1
    is_error(http.get("/api/jobs/queue/defualt", headers=admin), 404, "unknown queue 'defualt'", "did you mean")


def test_history_counts_per_queue_per_day(http: Http, admin: dict[str, str]) -> None:
    body = http.get("/api/jobs/history?days=2", headers=admin).json()
    assert body["days"] == 2 and len(body["history"]) == 3 * 2
    assert set(body["history"][0]) == {"queue", "date", "processed", "failed"}
    is_error(http.get("/api/jobs/history?days=0", headers=admin), 400, "query parameter 'days': ")
    is_error(http.get("/api/jobs/history?days=many", headers=admin), 400, "days")


def test_seed_pause_low_then_resume(http: Http, admin: dict[str, str], client: Client) -> None:
    # the seed: curl -X PUT http://localhost:3000/api/jobs/queue/low/pause -H "Authorization: Bearer <admin-token>"
    response = http.put("/api/jobs/queue/low/pause", headers=admin)
    assert response.status_code == 200 and response.json() == {"queue": "low", "paused": True}
    assert Queues(client).stats("low").paused
    assert http.put("/api/jobs/queue/low/resume", headers=admin).json() == {"queue": "low", "paused": False}
    assert not Queues(client).stats("low").paused
    is_error(http.put("/api/jobs/queue/nope/pause", headers=admin), 404, "nope")


def test_delete_and_archive_pending(http: Http, admin: dict[str, str], client: Client) -> None:
    for _ in range(3):
        client.dispatch("test:greet", name="Ann", queue="low")
    assert http.post("/api/jobs/queue/low/archive-pending", headers=admin).json() == {"queue": "low", "archived": 3}
    client.dispatch("test:greet", name="Bo", queue="low")
    assert http.delete("/api/jobs/queue/low/pending", headers=admin).json() == {"queue": "low", "deleted": 1}
    is_error(http.delete("/api/jobs/queue/nope/pending", headers=admin), 404)
    is_error(http.post("/api/jobs/queue/nope/archive-pending", headers=admin), 404)


# -- tasks -----------------------------------------------------------------------------------------------------------
def test_tasks_task_and_delete(http: Http, admin: dict[str, str], client: Client) -> None:
    refs = [client.dispatch("test:greet", name=f"n{i}") for i in range(3)]
    page = http.get("/api/jobs/queue/default/tasks?state=pending&page=1&size=2", headers=admin).json()
    assert page["total"] == 3 and len(page["tasks"]) == 2 and set(page["tasks"][0]) == TASK_FIELDS

    one = http.get(f"/api/jobs/task/default/{refs[0].id}", headers=admin)
    assert one.status_code == 200
    assert one.json()["payload"] == {"name": "n0"} and one.json()["state"] == "pending"

    deleted = http.delete(f"/api/jobs/task/default/{refs[0].id}", headers=admin)
    assert deleted.json() == {"queue": "default", "task_id": refs[0].id, "deleted": True, "state": "pending"}
    is_error(http.get(f"/api/jobs/task/default/{refs[0].id}", headers=admin), 404, refs[0].id)
    is_error(http.delete(f"/api/jobs/task/default/{refs[0].id}", headers=admin), 404)
    wrong = http.get("/api/jobs/queue/default/tasks?state=done", headers=admin)
    is_error(wrong, 400)
    assert wrong.json()["detail"].startswith("query parameter 'state': "), wrong.json()  # as the client wrote it
    is_error(http.get("/api/jobs/queue/nope/tasks", headers=admin), 404)


def test_seed_retry_by_queue_and_task_id(http: Http, admin: dict[str, str], client: Client) -> None:
    ref = client.dispatch("test:greet", name="Ann", delay=3600)
    # the seed: curl -X POST .../api/jobs/retry -d '{"queue": "default", "task_id": "abc123"}'
    response = http.post("/api/jobs/retry", json={"queue": "default", "task_id": ref.id}, headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["previous_state"] == "scheduled"
    assert Queues(client).task("default", ref.id).state == "pending"
    # a pending task cannot be retried: 409
    is_error(http.post("/api/jobs/retry", json={"queue": "default", "task_id": ref.id}, headers=admin), 409, "pending")
    is_error(http.post("/api/jobs/retry", json={"queue": "default", "task_id": "abc123"}, headers=admin), 404)
    is_error(http.post("/api/jobs/retry", json={"queue": "nope", "task_id": ref.id}, headers=admin), 404)
    is_error(http.post("/api/jobs/retry", json={"queue": "default"}, headers=admin), 400, "task_id")
    json_type = {**admin, "Content-Type": "application/json"}
    is_error(http.post("/api/jobs/retry", content=b"{not json", headers=json_type), 400)
    text_type = {**admin, "Content-Type": "text/plain"}
    body = b'{"queue": "default", "task_id": "abc123"}'
    is_error(http.post("/api/jobs/retry", content=body, headers=text_type), 415, "application/json", "text/plain")
    # the same body sent in chunks (no Content-Length) is refused the same way
    chunked = http.post("/api/jobs/retry", content=iter([body]), headers=text_type)
    assert chunked.request.headers.get("transfer-encoding") == "chunked"
    is_error(chunked, 415, "application/json", "text/plain")


# -- triggers --------------------------------------------------------------------------------------------------------
def test_a_trigger_cannot_say_who_triggered_it(http: Http, admin: dict[str, str]) -> None:
    # the API records the token's sub; a body field of that name is refused (it was a 500)
    body = {"name": "Ann", "triggered_by": "bob"}
    is_error(http.post("/api/jobs/trigger/test:greet", json=body, headers=admin), 422, "triggered_by")


def test_seed_trigger_email(http: Http, admin: dict[str, str], client: Client) -> None:
    body = {"to": "user@example.com", "subject": "Test Email", "body": "This is a test email from background job"}
    response = http.post("/api/jobs/trigger/email", json=body, headers=admin)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["message"] == "Email queued successfully" and answer["status"] == "queued"
    info = Queues(client).task("default", answer["task_id"])
    assert info.task == "email:send" and info.payload == body
    is_error(http.post("/api/jobs/trigger/email", json={"to": "a@b.co", "body": "b"}, headers=admin), 400, "subject")


def test_seed_trigger_export_names_a_declared_query(http: Http, admin: dict[str, str], client: Client) -> None:
    body = {"export_type": "excel", "export": "posts_by_user", "params": {"user_id": 1}}
    response = http.post("/api/jobs/trigger/export", json=body, headers=admin)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert set(answer) == {"message", "filename", "status", "task_id"}
    assert answer["filename"].startswith("export_1_") and answer["filename"].endswith(".xlsx")
    info = Queues(client).task("low", answer["task_id"])
    assert info.task == "export:process"
    assert info.payload == {
        "user_id": 1, "export_type": "excel", "export": "posts_by_user", "params": {"user_id": 1},
        "filename": answer["filename"],
    }  # fmt: skip


def test_trigger_export_refuses_sql_unknown_exports_and_bad_fields(http: Http, admin: dict[str, str]) -> None:
    def post(body: dict[str, Any], headers: dict[str, str] = admin) -> Any:
        return http.post("/api/jobs/trigger/export", json=body, headers=headers)

    # the seed's body names SQL: refused, saying why, with or without an export name
    sql = "SELECT * FROM posts WHERE user_id = 1"
    is_error(post({"export_type": "excel", "query": sql}), 422, "body.query", "raw SQL is never accepted")
    is_error(post({"export_type": "excel", "export": "posts_by_user", "query": sql}), 422, "raw SQL is never accepted")
    is_error(post({"export_type": "csv", "export": "posts_by_user", "formt": "x"}), 422, "body.formt: unknown field")
    is_error(post({"export_type": "excel", "export": "posts_by_usr"}), 422, "export", "did you mean")
    is_error(post({"export_type": "docx", "export": "posts_by_user"}), 400, "export_type")
    is_error(post({"export_type": "csv", "export": "posts_by_user", "params": {"x": 1}}), 422, "params.x")
    is_error(post({"export_type": "csv", "export": "posts_by_user", "filename": "../a.csv"}), 422, "filename")
    # a user token exports its own rows only
    is_error(post({"export_type": "csv", "export": "posts_by_user", "user_id": 2}, bearer("user", "1")), 422, "user_id")
    # and a name it chooses starts with its sub, so it cannot replace another user's file in the shared folder
    named = {"export_type": "csv", "export": "posts_by_user", "filename": "export_2_20261202_152000.csv"}
    assert post(named, bearer("user", "1")).json()["filename"] == "1-export_2_20261202_152000.csv"
    assert post({**named, "filename": "1-mine.csv"}, bearer("user", "1")).json()["filename"] == "1-mine.csv"
    assert post(named).json()["filename"] == "export_2_20261202_152000.csv"  # an admin names any file


def test_trigger_any_api_task(http: Http, user: dict[str, str], client: Client) -> None:
    response = http.post("/api/jobs/trigger/test:greet", json={"name": "Ann", "delay": "5m"}, headers=user)
    assert response.status_code == 202, response.text
    info = Queues(client).task("default", response.json()["task_id"])
    assert info.state == "scheduled" and info.payload == {"name": "Ann"}

    def post(task: str, body: Any) -> Any:
        return http.post(f"/api/jobs/trigger/{task}", json=body, headers=user)

    is_error(post("test:greet", {"nme": "Ann"}), 422, "'nme'", "did you mean 'name'")
    is_error(post("test:greet", {}), 422, "missing payload field 'name'")
    is_error(post("test:greet", {"name": "A", "delay": "soon"}), 422, "delay")
    is_error(post("test:greet", {"name": "A", "at": "tomorrow"}), 422, "at")
    is_error(post("test:greet", {"name": "A", "queue": "nope"}), 422, "queue")
    is_error(post("test:greet", [1, 2]), 400)
    is_error(post("test:internal", {"key": "k"}), 404, "api: true")
    is_error(post("test:nope", {}), 404, "unknown task")


# -- schedules -------------------------------------------------------------------------------------------------------
def test_schedules_create_list_delete(http: Http, admin: dict[str, str]) -> None:
    created = http.post(
        "/api/jobs/schedules",
        json={"task": "test:greet", "payload": {"name": "A"}, "cron": "0 9 * * MON"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    entry = created.json()
    assert entry["spec"] == "0 9 * * MON" and entry["source"] == "api" and entry["next_run_at"]
    once = http.post(
        "/api/jobs/schedules",
        json={"task": "test:greet", "payload": {"name": "B"}, "at": "2099-01-01T00:00:00+00:00"},
        headers=admin,
    )
    assert once.status_code == 201, once.text
    listed = http.get("/api/jobs/schedules", headers=admin).json()["schedules"]
    assert {e["id"] for e in listed} == {entry["id"], once.json()["id"]}

    removed = http.delete(f"/api/jobs/schedules/{entry['id']}", headers=admin)
    assert removed.json() == {"id": entry["id"], "deleted": True}
    is_error(http.delete(f"/api/jobs/schedules/{entry['id']}", headers=admin), 404)

    def post(body: dict[str, Any]) -> Any:
        return http.post("/api/jobs/schedules", json=body, headers=admin)

    is_error(post({"task": "test:greet", "payload": {"name": "A"}}), 422, "exactly one")
    is_error(post({"task": "test:greet", "payload": {"name": "A"}, "cron": "61 * * * *"}), 422, "61")
    is_error(post({"task": "test:greet", "payload": {"nam": "A"}, "every": "1h"}), 422, "'nam'")
    is_error(post({"task": "test:nope", "every": "1h"}), 404, "unknown task")
    is_error(post({"payload": {}, "every": "1h"}), 400, "task")


def test_a_schedule_from_schedules_yaml_cannot_be_deleted_through_the_api(
    http: Http, admin: dict[str, str], client: Client
) -> None:
    from jobkit.config.model import ScheduleSpec
    from jobkit.scheduling.store import ScheduleStore

    store = ScheduleStore(client.broker.lua)
    store.add(ScheduleSpec("nightly", "test:greet", "@daily", {"name": "A"}, None, "UTC", "yaml:nightly"), None)
    is_error(http.delete("/api/jobs/schedules/nightly", headers=admin), 409, "schedules.yaml")


# -- health, metrics, schema -----------------------------------------------------------------------------------------
def test_health_and_metrics_are_open(http: Http, client: Client) -> None:
    health = http.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "redis": "ok", "workers": 0, "last_check": None}
    client.dispatch("test:greet", name="Ann")
    metrics = http.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = metrics.text
    assert 'jobkit_queue_pending{queue="default"} 1' in text
    assert "# TYPE jobkit_tasks_processed_total counter" in text
    assert 'jobkit_queue_latency_seconds{queue="default"}' in text
    assert 'jobkit_queue_paused{queue="low"} 0' in text
    assert "jobkit_workers 0" in text


def test_health_counts_live_workers(http: Http, worker: Any) -> None:
    from tests.support import wait_for

    wait_for(lambda: http.get("/health").json()["workers"] >= 1, timeout=10, what="a heartbeat")


def test_openapi_documents_every_route_with_schemas(http: Http) -> None:
    document = http.get("/schema/openapi.json").json()
    paths = document["paths"]
    for path in (
        "/api/jobs/stats", "/api/jobs/queue/{queue}", "/api/jobs/history", "/api/jobs/trigger/email",
        "/api/jobs/trigger/export", "/api/jobs/trigger/{task}", "/api/jobs/queue/{queue}/pause",
        "/api/jobs/queue/{queue}/resume", "/api/jobs/queue/{queue}/pending", "/api/jobs/queue/{queue}/archive-pending",
        "/api/jobs/queue/{queue}/tasks", "/api/jobs/task/{queue}/{task_id}", "/api/jobs/retry", "/api/jobs/schedules",
        "/api/jobs/schedules/{entry_id}", "/health", "/metrics",
    ):  # fmt: skip
        assert path in paths, path
    stats = paths["/api/jobs/stats"]["get"]
    assert {"200", "401", "403", "503"} <= set(stats["responses"])
    assert stats["security"] == [{"BearerToken": []}]
    assert "QueueStats" in document["components"]["schemas"]
    assert set(document["components"]["schemas"]["QueueStats"]["properties"]) == STATS_FIELDS


def test_health_carries_the_latest_health_check(http: Http, client: Client) -> None:
    from jobkit.services.health import run_check

    run_check(client)

    body = http.get("/health").json()

    assert body["status"] == "ok"
    assert body["last_check"]["status"] in ("ok", "degraded")
    assert body["last_check"]["redis"]["status"] == "ok"


def test_a_token_accepted_once_is_still_refused_once_it_expires(http: Http) -> None:
    from jobkit.services.auth import mint_token
    from tests.support import wait_for

    headers = {"Authorization": f"Bearer {mint_token(SECRET, 'a', 'admin', timedelta(seconds=1))}"}
    assert http.get("/api/jobs/stats", headers=headers).status_code == 200  # verified, and remembered

    wait_for(lambda: http.get("/api/jobs/stats", headers=headers).status_code == 401, timeout=5, what="expiry")
    is_error(http.get("/api/jobs/stats", headers=headers), 401, "expired")
