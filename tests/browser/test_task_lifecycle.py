"""The task page of issue 18 in Chromium: a running task's progress moving and then its result, cancel from the page
and from the list of running tasks, the one-task archive route, and no such button for a user or viewer token."""

from __future__ import annotations

import itertools
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from playwright.sync_api import Page, Request, expect

from jobkit.services.client import TaskRef
from tests.support import wait_for
from tests.support.browser import PHONE, Stack, screenshot
from tests.support.databases import Database, fill_posts

pytestmark = pytest.mark.slow

# Records each change of the task page's state or progress, with the time the page showed it.
WATCH_TASK_PAGE = """() => {
  window.__seen = [];
  const note = () => {
    const progress = document.querySelector("#task [data-field='progress']");
    const taskState = document.querySelector("#task [data-field='state']");
    if (!progress || !taskState) return;
    const seen = { at: performance.now(), state: taskState.textContent, done: progress.dataset.done ?? null,
      text: progress.textContent };
    const last = window.__seen[window.__seen.length - 1];
    if (!last || last.state !== seen.state || last.done !== seen.done) window.__seen.push(seen);
  };
  new MutationObserver(note).observe(document.getElementById("view"), { childList: true, subtree: true });
}"""


def log_in(page: Page, token: str, where: str) -> None:
    """Open the dashboard afresh with ``token`` (the link `jobkit up` prints), then go to ``where``."""
    page.goto("about:blank")
    page.goto(f"/dashboard#token={token}")
    expect(page.locator("#who")).to_be_visible()
    page.evaluate("where => (location.hash = where)", where)


def task(stack: Stack, ref: TaskRef) -> dict[str, Any]:
    response = stack.api("GET", f"/api/jobs/task/{ref.queue}/{ref.id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def running(stack: Stack, ref: TaskRef) -> None:
    wait_for(lambda: task(stack, ref)["state"] == "active", timeout=15, what=f"{ref.id} to run")


def test_a_running_task_shows_its_progress_moving_and_then_its_result(page: Page, stack: Stack) -> None:
    # Given an admin on the page of a task that reports progress over 12 steps of 0.4 s
    log_in(page, stack.admin_token, "#/overview")
    expect(page.locator("#queues")).to_be_visible()
    ref = stack.client.dispatch("dash:steps", steps=12, pause=0.4)
    page.evaluate("where => (location.hash = where)", f"#/task/default/{ref.id}")
    expect(page.locator("#task [data-field='id']")).to_have_text(ref.id)
    page.evaluate(WATCH_TASK_PAGE)

    # When it runs, the bar moves; then it completes and the page shows its result and its last progress
    state = page.locator("#task [data-field='state']")
    expect(state).to_have_text("active")
    expect(page.locator("#task progress")).to_be_visible()
    screenshot(page, "task-progress-1280x800")
    expect(state).to_have_text("completed", timeout=30_000)
    expect(page.locator("#task [data-field='result']")).to_have_text(json.dumps({"rows": 12}, indent=2))
    progress = page.locator("#task [data-field='progress']")
    expect(progress).to_contain_text("12 / 12 (100 %) · steps")
    expect(progress).to_have_attribute("data-percent", "100")
    assert task(stack, ref)["result"] == {"rows": 12}  # as the API gives it
    expect(page.locator("#view button[data-action='cancel']")).to_have_count(0)  # nothing to cancel any more

    # And while it was active, the page showed a new figure at least every 2 s
    seen: list[dict[str, Any]] = page.evaluate("window.__seen")
    active = [s for s in seen if s["state"] == "active"]
    ended = next(s for s in seen if s["state"] == "completed")
    figures = [int(s["done"]) for s in active if s["done"]]
    assert len(set(figures)) >= 3 and figures == sorted(figures), seen
    gaps = [(later - earlier) / 1000 for earlier, later in itertools.pairwise([s["at"] for s in [*active, ended]])]
    print(f"{len(active)} figures while active, longest gap {max(gaps):.2f} s")
    assert max(gaps) <= 2.0, [round(gap, 2) for gap in gaps]
    assert any("/ 12 (" in s["text"] for s in active), active


@pytest.mark.timeout(120)
def test_a_running_exports_progress_bar_advances_without_a_reload(page: Page, stack: Stack) -> None:
    # Given a million posts in the SQLite file the stack's exports read (data_dir/app.db), and an admin on the
    # overview (the page is never reloaded from here on)
    path = stack.client.settings.database_path
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fill_posts(Database(kind="sqlite", url=f"sqlite:///{path}", path=path), rows=1_000_000)
    log_in(page, stack.admin_token, "#/overview")
    expect(page.locator("#queues")).to_be_visible()

    # When the export runs and the admin opens its page
    ref = stack.client.dispatch("export:process", export_type="csv", export="all_posts", filename="browser.csv")
    page.evaluate("where => (location.hash = where)", f"#/task/default/{ref.id}")
    expect(page.locator("#task [data-field='id']")).to_have_text(ref.id)
    page.evaluate(WATCH_TASK_PAGE)
    state = page.locator("#task [data-field='state']")
    expect(state).to_have_text("completed", timeout=90_000)

    # Then the bar showed the rows written of the million growing while it ran, and ends full
    seen: list[dict[str, Any]] = page.evaluate("window.__seen")
    figures = [int(s["done"]) for s in seen if s["state"] == "active" and s["done"] and int(s["done"]) > 0]
    print(f"export progress seen on the page: {figures}")
    assert len(set(figures)) >= 2 and figures == sorted(figures), seen
    assert all(0 < figure < 1_000_000 for figure in figures[:-1]), figures
    progress = page.locator("#task [data-field='progress']")
    expect(progress).to_contain_text("1,000,000 / 1,000,000 (100 %)")


def test_an_admin_cancels_a_running_task_from_its_page_and_from_the_list(page: Page, stack: Stack) -> None:
    # Given a task sleeping through 30 s, running
    ref = stack.client.dispatch("dash:nap", seconds=30)
    running(stack, ref)

    # When the admin cancels it from its page (and confirms)
    log_in(page, stack.admin_token, f"#/task/default/{ref.id}")
    state = page.locator("#task [data-field='state']")
    expect(state).to_have_text("active")
    page.get_by_role("button", name="Cancel task").click()
    expect(page.locator("#confirm-text")).to_contain_text("interrupted within a second")
    page.locator("#confirm-ok").click()
    asked = time.monotonic()

    # Then it ends canceled (archived, never retried) and the page says who canceled it
    expect(state).to_have_text("archived", timeout=10_000)
    ended = time.monotonic() - asked
    expect(page.locator("#task [data-field='canceled_by']")).to_have_text("ada")
    expect(page.get_by_role("button", name="Cancel task")).to_have_count(0)
    expect(page.get_by_role("button", name="Run now")).to_be_visible()  # it can be retried by hand
    found = task(stack, ref)
    assert (found["state"], found["canceled_by"], found["retried"]) == ("archived", "ada", 0), found
    print(f"archived {ended:.2f} s after the confirm")
    screenshot(page, "task-canceled-1280x800")

    # And a running task in the queue's list has a Cancel button that does the same
    other = stack.client.dispatch("dash:nap", seconds=30)
    running(stack, other)
    page.evaluate("where => (location.hash = where)", "#/queue/default?state=active")
    row = page.locator(f"#tasks tr[data-task='{other.id}']")
    row.get_by_role("button", name="Cancel").click()
    page.locator("#confirm-ok").click()
    expect(row).to_have_count(0, timeout=10_000)
    found = wait_for(lambda: (t := task(stack, other))["state"] == "archived" and t, what="the canceled task")
    assert (found["canceled_by"], found["retried"]) == ("ada", 0), found


def test_archive_on_the_task_page_uses_the_one_task_route(page: Page, stack: Stack) -> None:
    ref = stack.client.dispatch("dash:greet", name="later", delay=timedelta(hours=1))
    sent: list[Request] = []
    page.on("request", lambda request: sent.append(request) if request.method == "POST" else None)
    log_in(page, stack.admin_token, f"#/task/default/{ref.id}")
    expect(page.locator("#task [data-field='state']")).to_have_text("scheduled")
    expect(page.get_by_role("button", name="Cancel task")).to_be_visible()  # a scheduled task can be canceled too

    page.get_by_role("button", name="Archive").click()
    page.locator("#confirm-ok").click()

    expect(page.locator("#task [data-field='state']")).to_have_text("archived")
    assert [request.url for request in sent] == [f"{stack.url}/api/jobs/task/default/{ref.id}/archive"]
    assert task(stack, ref)["canceled_by"] is None  # archived, not canceled


def test_a_user_or_viewer_token_sees_the_task_but_no_cancel_or_archive_button(page: Page, stack: Stack) -> None:
    # Given a scheduled task a user token triggered (an admin would see Run now, Archive, Cancel task and Delete)
    triggered = stack.api(
        "POST", "/api/jobs/trigger/dash:steps", token=stack.user_token, json={"steps": 1, "pause": 0, "delay": "1h"}
    )
    assert triggered.status_code == 202, triggered.text
    task_id = triggered.json()["task_id"]
    where = f"#/task/default/{task_id}"

    # When the user opens its page: the task shows, read-only, without the limits a user may not read
    log_in(page, stack.user_token, where)
    expect(page.locator("#task [data-field='state']")).to_have_text("scheduled")
    expect(page.locator("#task [data-field='task']")).to_have_text("dash:steps")
    expect(page.locator("#view button")).to_have_count(0)
    expect(page.locator("#limits")).to_have_count(0)
    assert stack.api("POST", f"/api/jobs/task/default/{task_id}/cancel", token=stack.user_token).status_code == 403
    page.set_viewport_size(PHONE)
    screenshot(page, "task-user-390x844")

    # And a viewer sees the same page without a button, while an admin gets them all
    for token, buttons in ((stack.viewer_token, []), (stack.admin_token, ["run", "archive", "cancel", "delete"])):
        log_in(page, token, where)
        expect(page.locator("#task [data-field='state']")).to_have_text("scheduled")
        expect(page.locator("#limits")).to_be_visible()
        actions = page.locator("#view button[data-action]")
        expect(actions).to_have_count(len(buttons))
        assert actions.evaluate_all("nodes => nodes.map(n => n.dataset.action)") == buttons
