"""Every route of the app for every role: the expected answer, 401 without a valid token, or 403 naming the role.

The table below is checked against the app's own route table, so a route added without saying who may use it fails
this test until it is listed here.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from litestar import Litestar

from jobkit.services.auth import Revocations, mint_token, token_id
from jobkit.services.client import Client
from tests.support import wait_for
from tests.support.http import Http
from tests.support.tokens import SECRET, bearer

#: (method, route path) -> (who may use it, a concrete URL, a body). "open": no token needed; "viewer": viewer or
#: admin; "user": user or admin (triggers); "admin": admin only; "owner": viewer or admin, or the user who triggered it.
EMAIL = {"to": "a@b.co", "subject": "s", "body": "b"}
EXPORT = {"export_type": "csv", "export": "posts_by_user"}
SCHEDULE = {"task": "test:greet", "payload": {"name": "a"}, "every": "1h"}
BULK = {"action": "delete", "ids": ["nope"]}
ROUTES: dict[tuple[str, str], tuple[str, str, Any]] = {
    ("GET", "/api/jobs/stats"): ("viewer", "/api/jobs/stats", None),
    ("GET", "/api/jobs/queue/{queue:str}"): ("viewer", "/api/jobs/queue/default", None),
    ("GET", "/api/jobs/history"): ("viewer", "/api/jobs/history?days=2", None),
    ("GET", "/api/jobs/queue/{queue:str}/tasks"): ("viewer", "/api/jobs/queue/default/tasks", None),
    ("GET", "/api/jobs/schedules"): ("viewer", "/api/jobs/schedules", None),
    ("GET", "/api/jobs/limits/{task:str}"): ("viewer", "/api/jobs/limits/test:greet", None),
    ("GET", "/api/system/workers"): ("viewer", "/api/system/workers", None),
    ("GET", "/api/system/redis"): ("viewer", "/api/system/redis", None),
    ("GET", "/api/system/task-types"): ("viewer", "/api/system/task-types", None),
    ("GET", "/api/jobs/search"): ("viewer", "/api/jobs/search?q=own", None),
    ("GET", "/api/jobs/events"): ("viewer", "/api/jobs/events?limit=1", None),
    ("GET", "/api/jobs/task/{queue:str}/{task_id:str}"): ("owner", "/api/jobs/task/default/{own}", None),
    ("GET", "/api/jobs/workflows/{workflow_id:str}"): ("owner", "/api/jobs/workflows/nope", None),
    ("POST", "/api/jobs/trigger/email"): ("user", "/api/jobs/trigger/email", EMAIL),
    ("POST", "/api/jobs/trigger/export"): ("user", "/api/jobs/trigger/export", EXPORT),
    ("POST", "/api/jobs/trigger/{task:str}"): ("user", "/api/jobs/trigger/test:greet", {"name": "Ann"}),
    ("POST", "/api/jobs/trigger/{task:str}/batch"): ("user", "/api/jobs/trigger/test:greet/batch", [{"name": "A"}]),
    ("PUT", "/api/jobs/queue/{queue:str}/pause"): ("admin", "/api/jobs/queue/low/pause", None),
    ("PUT", "/api/jobs/queue/{queue:str}/resume"): ("admin", "/api/jobs/queue/low/resume", None),
    ("DELETE", "/api/jobs/queue/{queue:str}/pending"): ("admin", "/api/jobs/queue/low/pending", None),
    ("POST", "/api/jobs/queue/{queue:str}/archive-pending"): ("admin", "/api/jobs/queue/low/archive-pending", None),
    ("DELETE", "/api/jobs/task/{queue:str}/{task_id:str}"): ("admin", "/api/jobs/task/default/nope", None),
    ("POST", "/api/jobs/retry"): ("admin", "/api/jobs/retry", {"queue": "default", "task_id": "nope"}),
    ("POST", "/api/jobs/queue/{queue:str}/tasks/bulk"): ("admin", "/api/jobs/queue/low/tasks/bulk", BULK),
    ("POST", "/api/jobs/schedules"): ("admin", "/api/jobs/schedules", SCHEDULE),
    ("DELETE", "/api/jobs/schedules/{entry_id:str}"): ("admin", "/api/jobs/schedules/nope", None),
    ("POST", "/api/jobs/task/{queue:str}/{task_id:str}/cancel"): ("admin", "/api/jobs/task/default/n/cancel", None),
    ("POST", "/api/jobs/task/{queue:str}/{task_id:str}/archive"): ("admin", "/api/jobs/task/default/n/archive", None),
    ("GET", "/health"): ("open", "/health", None),
    ("GET", "/metrics"): ("open", "/metrics", None),
    ("GET", "/dashboard"): ("open", "/dashboard", None),
    ("GET", "/dashboard/static/{name:str}"): ("open", "/dashboard/static/dashboard.js", None),
    ("GET", "/schema"): ("open", "/schema", None),
    ("GET", "/schema/openapi.json"): ("open", "/schema/openapi.json", None),
    ("GET", "/schema/{path:str}"): ("open", "/schema/openapi.json", None),
}  # fmt: skip
ADMITS = {
    "open": {"none", "admin", "viewer", "user"},
    "viewer": {"admin", "viewer"},
    "user": {"admin", "user"},
    "admin": {"admin"},
    "owner": {"admin", "viewer", "user"},
}
NEEDS = {"viewer": "a viewer or admin token", "user": "a user or admin token", "admin": "an admin token"}
ROLES = ("none", "admin", "viewer", "user")


def headers(role: str, sub: str = "1") -> dict[str, str]:
    return {} if role == "none" else bearer(role, sub)


def test_the_table_lists_every_route_of_the_app(app: Litestar) -> None:
    served = {
        (method, route.path)
        for route in app.routes
        for handler in getattr(route, "route_handlers", [])
        for method in handler.http_methods
        if method not in ("OPTIONS", "HEAD")
    }
    assert served == set(ROUTES), "add the new route to ROUTES with who may use it"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", sorted(ROUTES), ids=lambda route: f"{route[0]} {route[1]}")
def test_each_role_gets_the_answer_its_role_allows(http: Http, route: tuple[str, str], role: str) -> None:
    needed, url, body = ROUTES[route]
    own = http.post("/api/jobs/trigger/test:greet", json={"name": "own"}, headers=bearer("user", "1")).json()["task_id"]
    response = http.request(route[0], url.format(own=own), json=body, headers=headers(role))
    if role in ADMITS[needed]:
        assert response.status_code < 500 and response.status_code not in (401, 403), response.text
        if needed == "owner" and "{own}" in url:
            assert response.status_code == 200, response.text
    elif role == "none":
        assert response.status_code == 401, response.text
    else:
        assert response.status_code == 403, response.text
        assert response.json()["detail"].startswith(f"this route needs {NEEDS[needed]}; '1' has role '{role}'")


def test_a_user_reads_the_tasks_it_triggered_and_no_other(http: Http) -> None:
    mine = http.post("/api/jobs/trigger/test:greet", json={"name": "me"}, headers=bearer("user", "ann")).json()
    theirs = http.post("/api/jobs/trigger/test:greet", json={"name": "you"}, headers=bearer("user", "bob")).json()

    read = http.get(f"/api/jobs/task/default/{mine['task_id']}", headers=bearer("user", "ann"))
    refused = http.get(f"/api/jobs/task/default/{theirs['task_id']}", headers=bearer("user", "ann"))

    assert read.status_code == 200 and read.json()["triggered_by"] == "ann"
    assert refused.status_code == 403 and "reads only the tasks it triggered" in refused.json()["detail"]
    assert http.get("/api/jobs/queue/default/tasks", headers=bearer("user", "ann")).status_code == 403
    viewer = http.get(f"/api/jobs/task/default/{theirs['task_id']}", headers=bearer("viewer", "vic"))
    assert viewer.status_code == 200 and viewer.json()["triggered_by"] == "bob"


def test_a_revoked_token_is_refused_within_a_second(http: Http, client: Client) -> None:
    token = mint_token(SECRET, "ops", "admin", timedelta(minutes=5))
    auth = {"Authorization": f"Bearer {token}"}
    assert http.get("/api/jobs/stats", headers=auth).status_code == 200

    Revocations(client.redis, client.keys).revoke(token_id(token))
    revoked_at = time.monotonic()

    # Every request that still got in started within a second of the revocation (on a busy machine a request may
    # take a while to answer: what counts is when it reached the API, not when its answer came back)
    admitted: list[float] = []

    def refused() -> bool:
        started = time.monotonic()
        status = http.get("/api/jobs/stats", headers=auth).status_code
        if status == 200:
            admitted.append(started - revoked_at)
        return status == 401

    wait_for(refused, timeout=5, interval=0.05)
    assert all(after < 1.0 for after in admitted), admitted
    assert http.get("/api/jobs/stats", headers=auth).json()["detail"] == "token revoked"
    other = mint_token(SECRET, "ops", "admin", timedelta(minutes=5))
    assert http.get("/api/jobs/stats", headers={"Authorization": f"Bearer {other}"}).status_code == 200


def test_a_token_lives_at_most_the_cap() -> None:
    with pytest.raises(Exception, match=r"ttl 100000d is longer than a token may live \(30d"):
        mint_token(SECRET, "ops", "admin", timedelta(days=100_000))
    assert mint_token(SECRET, "ops", "viewer", timedelta(days=30))
