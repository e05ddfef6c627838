"""Workflows and flow control through the API: trigger a workflow by name, read its state and a task's limits,
and 409 (with the existing id) for a unique task dispatched twice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from jobkit.config.jobs_file import load_project
from jobkit.config.model import Project
from tests.support.http import Http
from tests.support.tokens import bearer

FLOW_API_JOBS = """
queues: {default: {weight: 1}}
tasks:
  flow:fetch: {handler: "tests.handlers.flow:fetch"}
  flow:total: {handler: "tests.handlers.flow:total"}
  flow:once: {handler: "tests.handlers.flow:tick", unique: 1m, api: true}
  flow:rated: {handler: "tests.handlers.flow:tick", rate_limit: 10/s, concurrency: 2}
workflows:
  flow:report:
    api: true
    steps:
      - task: flow:fetch
        payload: {key: "{{ input.key }}", n: "{{ input.n }}"}
      - task: flow:total
        payload: {key: "{{ input.key }}", values: "{{ prev }}"}
  flow:private:
    steps:
      - task: flow:fetch
        payload: {key: "{{ input.key }}", n: 1}
"""


@pytest.fixture
def project(write_yaml: Callable[..., Path]) -> Project:
    return load_project(write_yaml(FLOW_API_JOBS))


def test_a_workflow_is_triggered_by_name_and_its_state_is_readable(http: Http) -> None:
    started = http.post("/api/jobs/trigger/flow:report", json={"key": "k", "n": 3}, headers=bearer("user"))
    assert started.status_code == 202, started.text
    body = started.json()
    assert (body["status"], body["task"], body["queue"]) == ("queued", "flow:report", "default")

    state = http.get(f"/api/jobs/workflows/{body['task_id']}", headers=bearer("user"))

    assert state.status_code == 200, state.text
    info = state.json()
    assert (info["id"], info["name"], info["status"], info["failed_step"]) == (
        body["task_id"],
        "flow:report",
        "running",
        None,
    )
    assert [step["tasks"][0]["task"] for step in info["steps"]] == ["flow:fetch", "flow:total"]
    assert [step["state"] for step in info["steps"]] == ["pending", "waiting"]


def test_a_workflow_without_api_true_cannot_be_triggered_and_an_unknown_run_is_404(http: Http) -> None:
    refused = http.post("/api/jobs/trigger/flow:private", json={"key": "k"}, headers=bearer("user"))
    assert refused.status_code == 404
    assert "api: true" in refused.json()["detail"]
    missing = http.get("/api/jobs/workflows/nope", headers=bearer("admin"))
    assert missing.status_code == 404 and set(missing.json()) == {"status_code", "detail"}


def test_a_unique_task_triggered_twice_answers_409_with_the_existing_id(http: Http) -> None:
    first = http.post("/api/jobs/trigger/flow:once", json={"key": "same"}, headers=bearer("user"))
    second = http.post("/api/jobs/trigger/flow:once", json={"key": "same"}, headers=bearer("user"))

    assert first.status_code == 202, first.text
    assert second.status_code == 409, second.text
    body = second.json()
    assert body["status_code"] == 409 and body["task_id"] == first.json()["task_id"]
    assert "flow:once" in body["detail"]


def test_a_user_is_not_told_the_id_of_another_users_task_that_holds_the_key(http: Http) -> None:
    first = http.post("/api/jobs/trigger/flow:once", json={"key": "k2"}, headers=bearer("user", "bob"))
    assert first.status_code == 202, first.text
    holder = first.json()["task_id"]

    other = http.post("/api/jobs/trigger/flow:once", json={"key": "k2"}, headers=bearer("user", "alice"))
    admin = http.post("/api/jobs/trigger/flow:once", json={"key": "k2"}, headers=bearer("admin"))

    assert other.status_code == 409, other.text
    assert other.json()["task_id"] == "" and holder not in other.text  # no way to learn bob's task
    assert "another task" in other.json()["detail"]
    assert admin.status_code == 409 and admin.json()["task_id"] == holder  # an admin may read every task


def test_the_limits_applied_to_a_task_are_readable(http: Http) -> None:
    limits = http.get("/api/jobs/limits/flow:rated", headers=bearer("viewer")).json()
    assert limits == {
        "task": "flow:rated", "unique": None, "unique_key": None, "rate_limit": "10/s", "concurrency": 2,
        "running": 0, "starts_in_window": 0,
    }  # fmt: skip
    assert http.get("/api/jobs/limits/flow:nope", headers=bearer("viewer")).status_code == 404
