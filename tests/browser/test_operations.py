"""The operator pages of issue 19 in Chromium: live updates and their polling fallback, bulk actions in one request,
search across every queue, and the task types page. The worker here consumes `critical` and `default` only, so
tasks of `low` stay where a test puts them (and `dash:later`, on `low`, has no live worker)."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from playwright.sync_api import Page, Request, Route, expect

from jobkit.services.queues import Queues
from tests.support.browser import LAPTOP, PHONE, Console, Stack, screenshot

pytestmark = pytest.mark.slow

WORKER_QUEUES = {"critical", "default"}


def log_in(page: Page, token: str) -> None:
    page.goto("/dashboard")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#queues")).to_be_visible()


def low(stack: Stack) -> dict[str, int]:
    stats = Queues(stack.client).stats("low")
    return {"pending": stats.pending, "scheduled": stats.scheduled, "archived": stats.archived}


def bulk_requests(page: Page) -> list[Request]:
    """The bulk requests the page sends from now on."""
    sent: list[Request] = []
    page.on("request", lambda request: sent.append(request) if "/tasks/bulk" in request.url else None)
    return sent


@pytest.fixture(autouse=True)
def empty_low(stack: Stack) -> None:
    """Each test starts with nothing on `low`."""
    for state in ("pending", "scheduled", "archived"):
        Queues(stack.client).delete_all("low", state)


# -- live updates ----------------------------------------------------------------------------------------------------
def test_a_live_count_changes_without_a_reload_within_a_second_of_a_dispatch(page: Page, stack: Stack) -> None:
    log_in(page, stack.admin_token)
    expect(page.locator("#live")).to_have_text("live")
    cell = page.locator("tr[data-queue='low'] [data-col='pending']")
    expect(cell).to_have_text("0")
    page.evaluate("window.__loaded = true")  # gone if the page reloads

    stack.client.dispatch("dash:later", name="live")
    dispatched = time.monotonic()
    expect(cell).to_have_text("1", timeout=5_000)
    elapsed = time.monotonic() - dispatched

    assert elapsed <= 1.0, f"the count changed {elapsed:.2f} s after the dispatch"
    assert page.evaluate("window.__loaded") is True
    screenshot(page, "live-1280x800")


def test_polling_takes_over_when_the_stream_is_cut_and_the_stream_comes_back(
    page: Page, stack: Stack, console: Console
) -> None:
    console.allow("api/jobs/events")  # the refused reconnects
    console.allow("ERR_FAILED")
    log_in(page, stack.admin_token)
    expect(page.locator("#live")).to_have_text("live")

    # When the stream drops and cannot come back
    def refuse(route: Route) -> None:
        route.abort()

    page.route("**/api/jobs/events*", refuse)
    stack.events.disconnect_all()

    # Then the page says so and polls: a new task still shows without a reload
    expect(page.locator("#live")).to_have_text("polling")
    page.evaluate("window.__loaded = true")
    stack.client.dispatch("dash:later", name="polled")
    expect(page.locator("tr[data-queue='low'] [data-col='pending']")).to_have_text("1")
    assert page.evaluate("window.__loaded") is True

    # And once the server takes streams again, the page is live again by itself
    page.unroute("**/api/jobs/events*", refuse)
    expect(page.locator("#live")).to_have_text("live", timeout=20_000)
    stack.client.dispatch("dash:later", name="live again")
    expect(page.locator("tr[data-queue='low'] [data-col='pending']")).to_have_text("2", timeout=5_000)


def test_newly_archived_tasks_are_listed_as_they_fail(page: Page, stack: Stack) -> None:
    log_in(page, stack.admin_token)
    expect(page.locator("#live")).to_have_text("live")
    word = f"fig{uuid.uuid4().hex[:6]}"
    ref = stack.client.dispatch("dash:fragile", key=f"{stack.namespace}:{word}", word=word)
    item = page.locator(f"#recent-archived li[data-task='{ref.id}']")
    expect(item).to_contain_text(f"the <b>{word}</b> printer is on fire")
    expect(page.locator("#recent-archived b")).to_have_count(0)  # the error is text, never markup


# -- bulk actions ----------------------------------------------------------------------------------------------------
def test_bulk_retry_of_500_archived_tasks_is_one_request(page: Page, stack: Stack) -> None:
    queues = Queues(stack.client)
    for n in range(500):
        stack.client.dispatch("dash:later", name=f"dead{n}", delay=timedelta(hours=1))
    assert queues.bulk_state("low", "archive", "scheduled").done == 500
    log_in(page, stack.admin_token)
    page.goto("/dashboard#/queue/low?state=archived")
    expect(page.locator("a[data-state='archived'] .count")).to_have_text("500")
    sent = bulk_requests(page)

    page.get_by_role("button", name="Run all").click()
    page.locator("#confirm-ok").click()

    expect(page.locator("#flash")).to_contain_text("500 task(s) will run now")
    assert low(stack) == {"pending": 500, "scheduled": 0, "archived": 0}
    assert [(r.method, r.post_data_json) for r in sent] == [("POST", {"action": "run", "state": "archived"})]
    expect(page.locator("a[data-state='archived'] .count")).to_have_text("0")


def test_a_selection_is_archived_then_deleted_one_request_each(page: Page, stack: Stack) -> None:
    refs = [stack.client.dispatch("dash:later", name=f"sel{n}", delay=timedelta(hours=2)) for n in range(3)]
    log_in(page, stack.admin_token)
    page.goto("/dashboard#/queue/low?state=scheduled")
    for ref in refs:
        expect(page.locator(f"tr[data-task='{ref.id}']")).to_be_visible()
    sent = bulk_requests(page)

    page.get_by_label(f"Select {refs[0].id}").check()
    page.get_by_label(f"Select {refs[1].id}").check()
    page.get_by_role("button", name="Archive selected").click()
    page.locator("#confirm-ok").click()
    expect(page.locator("#flash")).to_contain_text("2 task(s) archived")
    expect(page.locator(f"tr[data-task='{refs[0].id}']")).to_have_count(0)
    assert low(stack) == {"pending": 0, "scheduled": 1, "archived": 2}

    page.goto("/dashboard#/queue/low?state=archived")
    page.get_by_label("Select all").check()
    page.get_by_role("button", name="Delete selected").click()
    page.locator("#confirm-ok").click()
    expect(page.locator("#flash")).to_contain_text("2 task(s) deleted")
    assert low(stack) == {"pending": 0, "scheduled": 1, "archived": 0}
    bodies = [r.post_data_json or {} for r in sent]
    assert [body["action"] for body in bodies] == ["archive", "delete"]
    assert sorted(bodies[1]["ids"]) == sorted(r.id for r in refs[:2])


# -- search ----------------------------------------------------------------------------------------------------------
def test_search_every_queue_and_act_on_what_it_finds(page: Page, stack: Stack) -> None:
    word = f"quince{uuid.uuid4().hex[:6]}"
    on_low = stack.client.dispatch("dash:later", name=f"{word} on low", delay=timedelta(hours=1))
    on_critical = stack.client.dispatch("dash:urgent", name=f"{word} urgent", delay=timedelta(hours=1))
    stack.client.dispatch("dash:later", name="unrelated", delay=timedelta(hours=1))
    log_in(page, stack.admin_token)

    page.get_by_role("link", name="Search").click()
    page.get_by_label("Search every task").fill(word.upper())
    page.get_by_role("button", name="Search", exact=True).click()

    rows = page.locator("#results tbody tr[data-task]")
    expect(rows).to_have_count(2)
    expect(page.locator(f"tr[data-task='{on_low.id}'] [data-col='state']")).to_have_text("scheduled")
    expect(page.locator(f"tr[data-task='{on_critical.id}']")).to_have_attribute("data-queue", "critical")
    expect(page.locator("#search-status")).to_contain_text("2 task(s) found")
    expect(page.locator("#search-status")).to_contain_text("every task looked at")
    screenshot(page, "search-1280x800")
    page.set_viewport_size(PHONE)
    expect(rows.first).to_be_visible()
    screenshot(page, "search-390x844")
    page.set_viewport_size(LAPTOP)

    # A selection across queues is archived with one request per queue
    sent = bulk_requests(page)
    page.get_by_label("Select all").check()
    page.get_by_role("button", name="Archive selected").click()
    page.locator("#confirm-ok").click()
    expect(page.locator("#flash")).to_contain_text("2 task(s) archived")
    assert sorted(r.url.split("/queue/")[1].split("/")[0] for r in sent) == ["critical", "low"]
    expect(page.locator(f"tr[data-task='{on_low.id}'] [data-col='state']")).to_have_text("archived")

    # And the search narrows to a queue and a state
    page.get_by_label("Queue", exact=True).select_option("low")
    page.get_by_label("State", exact=True).select_option("archived")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(rows).to_have_count(1)
    expect(page.locator(f"tr[data-task='{on_low.id}']")).to_be_visible()


def test_a_miss_says_every_task_was_looked_at(page: Page, stack: Stack) -> None:
    log_in(page, stack.admin_token)
    page.goto("/dashboard#/search?q=nothing-has-this-text")
    expect(page.locator("#results td.empty")).to_have_text("No task matches.")
    expect(page.locator("#search-status")).to_contain_text("0 task(s) found")


# -- task types ------------------------------------------------------------------------------------------------------
def test_the_task_types_page_shows_who_runs_each_type_and_marks_the_unserved(page: Page, stack: Stack) -> None:
    log_in(page, stack.admin_token)
    page.get_by_role("link", name="Task types").click()

    table = page.locator("#task-types")
    expected = sorted(stack.client.project.tasks)
    expect(table.locator("tbody tr")).to_have_count(len(expected))
    assert table.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.task)") == expected
    [worker] = stack.api("GET", "/api/system/workers").json()["workers"]
    served = table.locator("tr[data-task='dash:greet']")
    expect(served).to_have_attribute("data-served", "true")
    expect(served.locator(f"li[data-worker='{worker['id']}']")).to_have_text(f"{worker['host']}:{worker['pid']}")
    unserved = table.locator("tr[data-task='dash:later']")
    expect(unserved).to_have_attribute("data-served", "false")
    expect(unserved.locator("[data-col='workers']")).to_have_text("no live worker")
    expect(table.locator("tr[data-task='dash:limited'] [data-col='limits']")).to_have_text("rate 50/s, concurrency 2")
    screenshot(page, "task-types-1280x800")
    page.set_viewport_size(PHONE)
    expect(unserved).to_be_visible()
    screenshot(page, "task-types-390x844")
    page.set_viewport_size(LAPTOP)


# -- roles -----------------------------------------------------------------------------------------------------------
def test_a_viewer_searches_and_sees_live_figures_but_no_action_and_the_api_refuses_bulk(
    page: Page, stack: Stack
) -> None:
    ref = stack.client.dispatch("dash:later", name="viewer sees me", delay=timedelta(hours=1))
    page.goto(f"/dashboard#token={stack.viewer_token}")
    expect(page.locator("#live")).to_have_text("live")
    for where in (
        "#/search?q=viewer+sees",
        "#/types",
        "#/queue/low?state=scheduled",
        "#/queue/low?state=scheduled&q=viewer",
    ):
        page.goto(f"/dashboard{where}")
        expect(page.locator("#view h1")).to_be_visible()
        if "q=" in where:
            expect(page.locator(f"tr[data-task='{ref.id}']")).to_be_visible()
        expect(page.locator("[data-action]")).to_have_count(0)
        expect(page.locator("input[data-select]")).to_have_count(0)
    refused = stack.api(
        "POST",
        "/api/jobs/queue/low/tasks/bulk",
        token=stack.viewer_token,
        json={"action": "delete", "state": "scheduled"},
    )
    assert refused.status_code == 403
    assert low(stack)["scheduled"] == 1
