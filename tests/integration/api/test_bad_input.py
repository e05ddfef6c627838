"""Bad input gets a clear 4xx naming what is wrong, never a 500: the "Low" findings of the security review."""

from __future__ import annotations

import json

import pytest

from jobkit.errors import PayloadError
from jobkit.services.client import Client
from tests.support.http import Http, is_error


def test_json_nested_a_thousand_deep_is_a_400_not_a_500(http: Http, user: dict[str, str]) -> None:
    body = '{"name": ' + "[" * 1000 + "]" * 1000 + "}"
    response = http.post(
        "/api/jobs/trigger/test:greet", content=body, headers={**user, "Content-Type": "application/json"}
    )
    is_error(response, 400, "nests", "deep")


def test_a_body_bigger_than_any_task_takes_is_413_and_a_big_payload_names_its_size(
    http: Http, user: dict[str, str], client: Client
) -> None:
    big = json.dumps({"name": "x" * (9 * 1024 * 1024)})
    response = http.post(
        "/api/jobs/trigger/test:greet", content=big, headers={**user, "Content-Type": "application/json"}
    )
    assert response.status_code == 413, response.text
    with pytest.raises(PayloadError, match=r"payload is 1\.5 MiB of JSON, more than its max_payload of 1 MiB"):
        client.dispatch("test:greet", name="x" * (1536 * 1024))
    # a body the app reads (under the largest max_payload plus room for options) is still held to its task's limit
    over = http.post("/api/jobs/trigger/test:greet", json={"name": "x" * (1030 * 1024)}, headers=user)
    is_error(over, 422, "max_payload")
    deep = {"name": "a", "data": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}
    is_error(http.post("/api/jobs/trigger/test:greet", json=deep, headers=user), 400, "32 levels")


def test_a_duration_past_any_bound_is_refused_clearly(http: Http, admin: dict[str, str]) -> None:
    body = {"task": "test:greet", "payload": {"name": "a"}, "every": "99999999999d"}
    is_error(http.post("/api/jobs/schedules", json=body, headers=admin), 422, "every", "out of range")
    trigger = {"name": "a", "delay": "99999999999d"}
    is_error(http.post("/api/jobs/trigger/test:greet", json=trigger, headers=admin), 422, "delay", "out of range")


@pytest.mark.parametrize("route", ["/api/jobs/trigger/email", "/api/jobs/trigger/export"])
def test_unknown_fields_on_the_trigger_routes_are_a_422_naming_the_field(
    http: Http, admin: dict[str, str], route: str
) -> None:
    bodies = {
        "/api/jobs/trigger/email": {"to": "a@b.co", "subject": "s", "body": "b", "cc": "x@y.z"},
        "/api/jobs/trigger/export": {"export_type": "csv", "export": "posts_by_user", "cc": "x@y.z"},
    }
    is_error(http.post(route, json=bodies[route], headers=admin), 422, "body.cc: unknown field")


def test_a_dispatch_option_is_not_taken_as_a_payload_field(http: Http, user: dict[str, str]) -> None:
    response = http.post("/api/jobs/trigger/test:greet", json={"name": "a", "max_retries": 1000}, headers=user)
    is_error(response, 422, "max_retries")


def test_the_schema_page_pulls_no_third_party_script(http: Http) -> None:
    page = http.get("/schema")
    assert page.status_code == 200 and page.headers["content-type"].startswith("application/")
    assert "<script" not in page.text and "openapi" in page.json()
