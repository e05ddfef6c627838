"""The operator routes of issue 19: search, the event stream, bulk actions and the task types page's data."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any

import dramatiq
from litestar import Litestar

from jobkit.services.auth import Revocations, mint_token, token_id
from jobkit.services.client import Client
from jobkit.services.queues import Queues
from jobkit.services.search import Search
from tests.support import wait_for
from tests.support.filling import fill_tasks
from tests.support.http import Http, is_error
from tests.support.routes import TASK_FIELDS
from tests.support.tokens import SECRET, bearer


def events_of(text: str) -> list[tuple[str, Any]]:
    """(event name, data) of each event of a text/event-stream body; comments as ("", text)."""
    found: list[tuple[str, Any]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line.startswith(": "):
                found.append(("", line[2:]))
        if data:
            found.append((name, json.loads("\n".join(data))))
    return found


def once_streaming(app: Litestar, action: Any) -> threading.Thread:
    """Run ``action`` in a thread once a stream is open and its first sample went out (the request streams in the
    test's own thread)."""
    events = app.state.services.events

    def run() -> None:
        wait_for(lambda: events.subscribers > 0 and events.samples > 0, what="a stream to be open")
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# -- search ----------------------------------------------------------------------------------------------------------
def test_search_answers_task_objects_and_a_cursor_for_a_viewer(http: Http, client: Client) -> None:
    ref = client.dispatch("test:greet", name="Zebediah", delay=3600)
    other = client.dispatch("test:internal", key="nothing to see", delay=3600)

    answer = http.get("/api/jobs/search", params={"q": "zebed"}, headers=bearer("viewer", "vic"))

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"tasks", "cursor", "scanned"} and body["cursor"] is None
    [task] = body["tasks"]
    assert set(task) == TASK_FIELDS
    assert (task["id"], task["queue"], task["state"], task["payload"]) == (
        ref.id, "default", "scheduled", {"name": "Zebediah"}
    )  # fmt: skip
    by_type = http.get("/api/jobs/search?q=test:internal&state=scheduled,retry", headers=bearer("viewer"))
    assert [t["id"] for t in by_type.json()["tasks"]] == [other.id]
    assert http.get("/api/jobs/search?q=zebed&queue=low&queue=critical", headers=bearer()).json()["tasks"] == []
    assert http.get("/api/jobs/search?q=&task=test:greet", headers=bearer()).json()["tasks"][0]["id"] == ref.id


def test_search_pages_with_its_cursor(http: Http, client: Client) -> None:
    fill_tasks(client, 400, [("test:greet", {"name": "Ann"})])
    seen: list[str] = []
    params: dict[str, Any] = {"q": "echo", "size": 10}
    for _ in range(100):
        body = http.get("/api/jobs/search", params=params, headers=bearer()).json()
        seen.extend(t["id"] for t in body["tasks"])
        if body["cursor"] is None:
            break
        params["cursor"] = body["cursor"]
    assert len(seen) == len(set(seen)) == 50  # "echo" is every eighth word of 400


def test_a_forged_search_cursor_is_a_422_naming_it_not_a_503(http: Http, app: Litestar, client: Client) -> None:
    # Given a real cursor's digest (computable from public inputs: the text and the filters)
    fill_tasks(client, 50, [("test:greet", {"name": "Ann"})])
    services = app.state.services
    real = Search(services.queues, budget=timedelta(0), call_entries=1).search("e", size=1).cursor
    assert real is not None
    digest = real.rsplit(".", 1)[1]
    # Then numbers no search answers are refused naming the parameter: a source of 0 or past the last, an HSCAN
    # cursor of 2**64 or more (Redis refused it: a 503 "Redis is unreachable")
    for forged in (f"1.99999999999999999999.0.4.{digest}", f"0.0.0.4.{digest}", f"999.0.0.4.{digest}"):
        is_error(http.get("/api/jobs/search", params={"q": "e", "cursor": forged}, headers=bearer()), 422, "cursor:")
    assert http.get("/api/jobs/search", params={"q": "e", "cursor": real}, headers=bearer()).status_code == 200


def test_a_search_over_the_cap_of_the_process_is_a_429(http: Http, app: Litestar) -> None:
    services = app.state.services
    services.search = Search(services.queues, concurrent=0)  # every slot taken
    is_error(http.get("/api/jobs/search?q=x", headers=bearer()), 429, "searches at once", "try again")


def test_search_refuses_bad_input_naming_it(http: Http) -> None:
    is_error(http.get("/api/jobs/search?q=x&cursor=zzz", headers=bearer()), 422, "cursor:")
    is_error(http.get("/api/jobs/search?q=x&state=archive", headers=bearer()), 422, "did you mean 'archived'")
    is_error(http.get("/api/jobs/search?q=x&queue=nope", headers=bearer()), 404, "unknown queue 'nope'")
    is_error(http.get("/api/jobs/search", params={"q": "x" * 201}, headers=bearer()), 400, "q")
    is_error(http.get("/api/jobs/search?q=x&size=0", headers=bearer()), 400, "size")
    is_error(http.get("/api/jobs/search?q=x", headers=bearer("user")), 403, "viewer or admin")


# -- bulk ------------------------------------------------------------------------------------------------------------
def test_bulk_by_ids_and_by_state_is_one_request_each(http: Http, client: Client) -> None:
    refs = [client.dispatch("test:greet", name=f"n{n}", delay=3600) for n in range(4)]
    url = "/api/jobs/queue/default/tasks/bulk"

    archived = http.post(url, json={"action": "archive", "ids": [r.id for r in refs[:3]] + ["nope"]}, headers=bearer())
    assert archived.status_code == 200, archived.text
    assert archived.json() == {
        "queue": "default", "action": "archive", "done": 3,
        "failed": [{"task_id": "nope", "detail": "no task 'nope' in queue 'default'"}],
    }  # fmt: skip
    ran = http.post(url, json={"action": "retry", "state": "archived"}, headers=bearer())
    assert ran.json() == {"queue": "default", "action": "retry", "done": 3, "failed": []}
    deleted = http.post(url, json={"action": "delete", "state": "scheduled"}, headers=bearer())
    assert deleted.json()["done"] == 1
    stats = Queues(client).stats("default")
    assert (stats.pending, stats.scheduled, stats.archived) == (3, 0, 0)


def test_bulk_refuses_bad_bodies_and_non_admins(http: Http) -> None:
    url = "/api/jobs/queue/default/tasks/bulk"
    is_error(http.post(url, json={"action": "run"}, headers=bearer()), 422, "ids, state: give exactly one")
    both = {"action": "run", "ids": [], "state": "archived"}
    is_error(http.post(url, json=both, headers=bearer()), 422, "ids, state: give exactly one")
    is_error(http.post(url, json={"action": "explode", "ids": []}, headers=bearer()), 400, "action")
    is_error(http.post(url, json={"action": "run", "ids": [], "extra": 1}, headers=bearer()), 422, "body.extra")
    is_error(http.post(url, json={"action": "delete", "state": "active"}, headers=bearer()), 409, "cannot be deleted")
    is_error(http.post("/api/jobs/queue/nope/tasks/bulk", json={"action": "run", "ids": []}, headers=bearer()), 404)
    is_error(http.post(url, json={"action": "run", "ids": []}, headers=bearer("viewer")), 403, "an admin token")


# -- task types ------------------------------------------------------------------------------------------------------
def test_task_types_list_every_declared_task_and_the_live_workers_that_run_it(http: Http, client: Client) -> None:
    idle = http.get("/api/system/task-types", headers=bearer("viewer")).json()["task_types"]
    assert [t["task"] for t in idle] == ["email:send", "export:process", "test:greet", "test:internal"]
    assert all(t["served"] is False and t["workers"] == [] for t in idle)
    greet = next(t for t in idle if t["task"] == "test:greet")
    assert greet["queue"] == "default" and greet["api"] is True and greet["max_retries"] == 3
    assert greet["retention_max"] == 10_000  # the default count of completed tasks kept per queue

    worker = dramatiq.Worker(client.broker, worker_threads=1, worker_timeout=100, queues={"low"})
    worker.start()
    try:
        types = {t["task"]: t for t in http.get("/api/system/task-types", headers=bearer()).json()["task_types"]}
        [serving] = http.get("/api/system/workers", headers=bearer()).json()["workers"]
    finally:
        worker.stop()
    assert serving["tasks"] == ["export:process"] and serving["queues"] == ["low"]
    assert types["export:process"]["served"] is True
    assert types["export:process"]["workers"] == [{"id": serving["id"], "host": serving["host"], "pid": serving["pid"]}]
    assert types["test:greet"]["served"] is False  # its queue, default, has no live worker


# -- events ----------------------------------------------------------------------------------------------------------
def test_the_stream_starts_with_stats_and_reports_how_counts_move(http: Http, app: Litestar, client: Client) -> None:
    mover = once_streaming(app, lambda: client.dispatch("test:greet", name="live", delay=3600))
    response = http.get("/api/jobs/events?limit=3", headers=bearer("viewer"))
    mover.join()

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = events_of(response.text)
    assert [name for name, _ in events][:1] == ["stats"]
    first = events[0][1]
    assert [q["queue"] for q in first["queues"]] == ["critical", "default", "low"]
    names = [name for name, _ in events]
    assert names == ["stats", "stats", "changes"]
    assert events[2][1]["queues"] == [{"queue": "default", "scheduled": 1}]
    assert next(q for q in events[1][1]["queues"] if q["queue"] == "default")["scheduled"] == 1


def test_the_stream_reports_newly_archived_tasks(http: Http, app: Litestar, client: Client) -> None:
    ref = client.dispatch("test:greet", name="doomed", delay=3600)
    mover = once_streaming(app, lambda: Queues(client).archive("default", ref.id))
    response = http.get("/api/jobs/events?limit=4", headers=bearer())
    mover.join()
    archived = [data for name, data in events_of(response.text) if name == "archived"]
    assert [[t["id"] for t in data["tasks"]] for data in archived] == [[ref.id]]
    assert archived[0]["tasks"][0]["state"] == "archived"


def test_the_stream_ends_within_a_second_of_its_token_being_revoked(http: Http, app: Litestar, client: Client) -> None:
    token = mint_token(SECRET, "ops", "viewer", timedelta(minutes=5))
    revoked_at: list[float] = []

    def revoke() -> None:
        Revocations(client.redis, client.keys).revoke(token_id(token))
        revoked_at.append(time.monotonic())

    revoker = once_streaming(app, revoke)
    response = http.get("/api/jobs/events", headers={"Authorization": f"Bearer {token}"})
    revoker.join()
    assert time.monotonic() - revoked_at[0] < 2.0  # checked every second, with a refresh of the revocations
    assert events_of(response.text)[-1] == ("end", {"reason": "token revoked"})
    assert http.get("/api/jobs/events?limit=1", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_the_stream_ends_when_its_token_expires(http: Http) -> None:
    token = mint_token(SECRET, "ops", "viewer", timedelta(seconds=2))
    response = http.get("/api/jobs/events", headers={"Authorization": f"Bearer {token}"})
    assert events_of(response.text)[-1] == ("end", {"reason": "token expired"})


def test_the_server_can_end_every_stream(http: Http, app: Litestar) -> None:
    events = app.state.services.events
    ender = once_streaming(app, events.disconnect_all)
    response = http.get("/api/jobs/events", headers=bearer())
    ender.join()
    assert events_of(response.text)[-1] == ("end", {"reason": "server going away; reconnect"})
    assert events.subscribers == 0
