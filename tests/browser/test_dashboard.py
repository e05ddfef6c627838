"""The dashboard in Chromium against the real app, Redis and worker: the acceptance list of issue 7."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.support import wait_for
from tests.support.browser import LAPTOP, PHONE, Console, Stack, screenshot

pytestmark = pytest.mark.slow

XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def log_in(page: Page, token: str) -> None:
    page.goto("/dashboard")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#queues")).to_be_visible()


def stats(stack: Stack, queue: str) -> dict[str, object]:
    response = stack.api("GET", f"/api/jobs/queue/{queue}")
    assert response.status_code == 200, response.text
    found: dict[str, object] = response.json()
    return found


def test_without_a_token_only_the_login_shows(page: Page) -> None:
    page.goto("/dashboard")
    expect(page.get_by_label("Token")).to_be_visible()
    expect(page.locator("#top")).to_be_hidden()
    expect(page.locator("#view")).to_be_hidden()


def test_a_bad_token_is_refused(page: Page, console: Console) -> None:
    console.allow("status of 401")
    page.goto("/dashboard")
    page.get_by_label("Token").fill("not-a-token")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).to_contain_text("refused")
    expect(page.locator("#view")).to_be_hidden()


def test_overview_shows_the_queues_with_their_counts(page: Page, stack: Stack) -> None:
    # Given three tasks scheduled an hour ahead on `critical` and one on `low`
    for n in range(3):
        stack.client.dispatch("dash:urgent", name=f"n{n}", delay=timedelta(hours=1))
    stack.client.dispatch("dash:later", name="x", delay=timedelta(hours=1))

    # When an admin opens the link `jobkit up` prints
    page.goto(f"/dashboard#token={stack.admin_token}")

    # Then the token leaves the address bar, and every queue of jobs.yaml is listed with the API's figures
    expect(page.locator("#queues")).to_be_visible()
    assert "token" not in page.url
    for queue in ("critical", "default", "low"):
        row = page.locator(f"tr[data-queue='{queue}']")
        expect(row).to_be_visible()
        expected = stats(stack, queue)
        for column in ("pending", "scheduled", "retry", "archived"):
            expect(row.locator(f"[data-col='{column}']")).to_have_text(str(expected[column]))
        expect(row.locator("[data-col='state']")).to_have_text("running")
    expect(page.locator("tr[data-queue='critical'] [data-col='scheduled']")).to_have_text("3")
    expect(page.locator("tr[data-queue='low'] [data-col='scheduled']")).to_have_text("1")
    expect(page.locator("#chart svg")).to_be_visible()
    page.get_by_role("button", name="30 days").click()
    expect(page.locator("#chart svg")).to_have_attribute("aria-label", "Processed and failed, last 30 days")
    page.get_by_role("button", name="7 days").click()
    expect(page.locator("#chart svg")).to_have_attribute("aria-label", "Processed and failed, last 7 days")

    screenshot(page, "overview-1280x800")
    page.set_viewport_size(PHONE)
    expect(page.locator("tr[data-queue='low']")).to_be_visible()
    screenshot(page, "overview-390x844")
    page.set_viewport_size(LAPTOP)


def test_pause_low(page: Page, stack: Stack) -> None:
    log_in(page, stack.admin_token)
    row = page.locator("tr[data-queue='low']")
    row.get_by_role("button", name="Pause").click()
    expect(row.locator("[data-col='state']")).to_have_text("paused")
    assert stats(stack, "low")["paused"] is True

    row.get_by_role("button", name="Resume").click()
    expect(row.locator("[data-col='state']")).to_have_text("running")
    assert stats(stack, "low")["paused"] is False


def test_find_an_archived_task_by_its_error_retry_it_and_see_it_complete(page: Page, stack: Stack) -> None:
    # Given a task that failed once with no retries left, and another archived task that must not match
    word = f"kumquat{uuid.uuid4().hex[:6]}"
    ref = stack.client.dispatch("dash:fragile", key=f"{stack.namespace}:fragile:{word}", word=word)
    other = stack.client.dispatch("dash:fragile", key=f"{stack.namespace}:fragile:other", word="banana")
    wait_for(lambda: stats(stack, "default")["archived"] == 2, what="both tasks to be archived")

    # When the admin searches the archived tab of `default` for a word of the error
    log_in(page, stack.admin_token)
    page.locator("tr[data-queue='default'] a").click()
    page.locator("a[data-state='archived']").click()
    expect(page.locator(f"tr[data-task='{other.id}']")).to_be_visible()
    page.get_by_label("Search tasks").fill(word)
    page.get_by_role("button", name="Search").click()

    # Then only that task is listed, its error shown as text (markup and all)
    row = page.locator(f"tr[data-task='{ref.id}']")
    expect(row).to_be_visible()
    expect(page.locator(f"tr[data-task='{other.id}']")).to_have_count(0)
    expect(row).to_contain_text(f"the <b>{word}</b> printer is on fire")
    expect(page.locator("#tasks b")).to_have_count(0)
    screenshot(page, "queue-1280x800")
    page.set_viewport_size(PHONE)
    expect(row).to_be_visible()
    screenshot(page, "queue-390x844")
    page.set_viewport_size(LAPTOP)

    # When it is retried (after confirming)
    row.get_by_role("button", name="Run").click()
    expect(page.locator("#confirm")).to_be_visible()
    page.locator("#confirm-ok").click()

    # Then it completes, and the completed tab shows it
    expect(page.locator("#flash")).to_contain_text("will run now")
    wait_for(lambda: stack.api("GET", f"/api/jobs/task/default/{ref.id}").json()["state"] == "completed")
    page.locator("a[data-state='completed']").click()
    expect(page.locator(f"tr[data-task='{ref.id}']")).to_be_visible()
    page.locator(f"tr[data-task='{ref.id}'] a").click()
    expect(page.locator("[data-field='state']")).to_have_text("completed")
    expect(page.locator("[data-field='error']")).to_contain_text(f"<b>{word}</b>")


def test_bulk_delete_asks_first(page: Page, stack: Stack) -> None:
    refs = [stack.client.dispatch("dash:later", name=f"bulk{n}", delay=timedelta(hours=2)) for n in range(2)]
    log_in(page, stack.admin_token)
    page.goto("/dashboard#/queue/low?state=scheduled")
    for ref in refs:
        expect(page.locator(f"tr[data-task='{ref.id}']")).to_be_visible()
    page.get_by_label(f"Select {refs[0].id}").check()

    page.get_by_role("button", name="Delete selected").click()
    page.locator("#confirm-cancel").click()
    expect(page.locator(f"tr[data-task='{refs[0].id}']")).to_be_visible()

    page.get_by_role("button", name="Delete selected").click()
    page.locator("#confirm-ok").click()
    expect(page.locator(f"tr[data-task='{refs[0].id}']")).to_have_count(0)
    expect(page.locator(f"tr[data-task='{refs[1].id}']")).to_be_visible()
    assert stack.api("GET", f"/api/jobs/task/low/{refs[0].id}").status_code == 404


def test_add_a_one_time_schedule_and_see_it_listed(page: Page, stack: Stack) -> None:
    log_in(page, stack.admin_token)
    page.get_by_role("link", name="Schedules").click()
    form = page.locator("#schedule-form")
    form.get_by_label("Task").fill("dash:greet")
    form.get_by_label("When").select_option("once")
    at = (datetime.now() + timedelta(hours=3)).replace(microsecond=0)
    form.locator("input[name='at']").fill(at.strftime("%Y-%m-%dT%H:%M:%S"))
    form.get_by_label("Payload (JSON)").fill('{"name": "sched"}')
    form.get_by_role("button", name="Add schedule").click()

    expect(page.locator("#flash")).to_contain_text("added")
    entries = stack.api("GET", "/api/jobs/schedules").json()["schedules"]
    [entry] = [e for e in entries if e["task"] == "dash:greet" and e["payload"] == {"name": "sched"}]
    row = page.locator(f"tr[data-schedule='{entry['id']}']")
    expect(row).to_be_visible()
    expect(row).to_contain_text("@at ")
    expect(row).to_contain_text("api")
    assert datetime.fromisoformat(entry["next_run_at"]).timestamp() == pytest.approx(at.timestamp(), abs=1)


def test_a_viewer_token_sees_a_read_only_view_and_the_api_refuses_actions(page: Page, stack: Stack) -> None:
    page.goto(f"/dashboard#token={stack.viewer_token}")
    expect(page.locator("#who")).to_contain_text("read-only")
    expect(page.locator("#queues tbody tr")).to_have_count(3)  # a viewer token reads the figures
    for where in ("#/overview", "#/queue/low?state=scheduled", "#/schedules", "#/workers", "#/redis"):
        page.goto(f"/dashboard{where}")
        expect(page.locator("#view h1")).to_be_visible()
        expect(page.locator("[data-action]")).to_have_count(0)
        expect(page.locator("#schedule-form")).to_have_count(0)
    refused = stack.api("PUT", "/api/jobs/queue/low/pause", token=stack.viewer_token)
    assert refused.status_code == 403
    assert stats(stack, "low")["paused"] is False


def test_a_user_token_is_told_what_it_may_do_and_reads_no_page(page: Page, stack: Stack) -> None:
    page.goto(f"/dashboard#token={stack.user_token}")
    expect(page.locator("#who")).to_contain_text("(user, triggers only)")
    expect(page.locator("#user-role")).to_contain_text("may trigger the tasks declared with api: true")
    for where in ("#/overview", "#/schedules", "#/workers"):
        page.goto(f"/dashboard{where}")
        expect(page.locator("#user-role")).to_be_visible()
        expect(page.locator("#queues")).to_have_count(0)
    assert stack.api("GET", "/api/jobs/stats", token=stack.user_token).status_code == 403


def test_payloads_and_errors_are_shown_as_text_never_as_html(page: Page, stack: Stack) -> None:
    ref = stack.client.dispatch("dash:greet", name=XSS, delay=timedelta(hours=1))
    log_in(page, stack.admin_token)
    page.goto("/dashboard#/queue/default?state=scheduled")
    row = page.locator(f"tr[data-task='{ref.id}']")
    expect(row).to_contain_text("<script>window.__pwned = 1</script>")
    page.goto(f"/dashboard#/task/default/{ref.id}")
    expect(page.locator("[data-field='payload']")).to_contain_text(XSS.replace('"', '\\"'))
    assert page.evaluate("window.__pwned") is None
    expect(page.locator("#view img, #view script")).to_have_count(0)


def test_every_page_loads_without_console_errors(page: Page, stack: Stack) -> None:
    ref = stack.client.dispatch("dash:later", name="tour", delay=timedelta(hours=1))
    log_in(page, stack.admin_token)
    page.get_by_label("Refresh interval").select_option("2")
    for state in ("pending", "active", "scheduled", "retry", "archived", "completed"):
        page.goto(f"/dashboard#/queue/low?state={state}")
        expect(page.locator("#tasks tbody tr").first).to_be_visible()
    page.goto(f"/dashboard#/task/low/{ref.id}")
    expect(page.locator("[data-field='task']")).to_have_text("dash:later")

    page.get_by_role("link", name="Workers").click()
    worker = page.locator("#workers tbody tr[data-worker]")
    expect(worker).to_have_count(1)
    expect(worker).to_contain_text("/ 2")  # busy / threads

    page.get_by_role("link", name="Redis").click()
    expect(page.locator("[data-field='version']")).to_have_text(stack.redis.info()["redis_version"])
    expect(page.locator("[data-field='connected_clients']")).to_be_visible()
    # jobkit's share of Redis memory, per queue with its largest key (the low queue holds the scheduled task)
    expect(page.locator("[data-field='jobkit_memory_human']")).to_contain_text(" used: ")
    expect(page.locator("[data-field='jobkit_memory_human']")).to_contain_text(":low.msgs")

    page.get_by_role("link", name="Schedules").click()
    expect(page.locator("#schedules")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_label("Token")).to_be_visible()


def test_assets_are_served_without_a_token(stack: Stack) -> None:
    import httpx

    page = httpx.get(stack.url + "/dashboard", timeout=5)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert httpx.get(stack.url + "/dashboard/static/dashboard.js", timeout=5).status_code == 200
    assert httpx.get(stack.url + "/dashboard/static/..%2Fdashboard.py", timeout=5).status_code == 404
    assert httpx.get(stack.url + "/api/system/workers", timeout=5).status_code == 401
    viewer = stack.api("GET", "/api/system/redis", token=stack.viewer_token)
    assert viewer.status_code == 200  # reading is open to viewer tokens
    assert stack.api("GET", "/api/system/redis", token=stack.user_token).status_code == 403


def test_the_task_page_shows_the_limits_of_its_task_type(page: Page, stack: Stack) -> None:
    # Given a task with a rate limit and a concurrency cap, and one with no limits
    limited = stack.client.dispatch("dash:limited", value="lim", delay=timedelta(hours=1))
    plain = stack.client.dispatch("dash:greet", name="plain", delay=timedelta(hours=1))

    # When the admin opens its task page
    log_in(page, stack.admin_token)
    page.goto(f"/dashboard#/task/default/{limited.id}")

    # Then the limits block shows the API's figures
    limits = page.locator("#limits")
    expect(page.locator("#view h2", has_text="Limits")).to_be_visible()
    expect(limits.locator("[data-limit='rate_limit']")).to_have_text("50/s")
    expect(limits.locator("[data-limit='concurrency']")).to_have_text("2")
    expect(limits.locator("[data-limit='running']")).to_have_text("0")
    expect(limits.locator("[data-limit='starts_in_window']")).to_have_text("0")
    expect(limits.locator("[data-limit='unique']")).to_have_text("none")
    expect(limits.locator("[data-limit='unique_key']")).to_have_text("none")
    expected = stack.api("GET", "/api/jobs/limits/dash:limited").json()
    assert expected["rate_limit"] == "50/s" and expected["concurrency"] == 2

    # And a task type without limits says so
    page.goto(f"/dashboard#/task/default/{plain.id}")
    expect(page.locator("[data-field='task']")).to_have_text("dash:greet")
    expect(page.locator("#limits [data-field='limits']")).to_have_text("none")


def test_a_workflow_run_shows_its_steps_and_their_states(page: Page, stack: Stack) -> None:
    # Given a workflow run started through the API
    started = stack.api("POST", "/api/jobs/trigger/dash:flow", json={"n": 21})
    assert started.status_code == 202, started.text
    run_id = started.json()["task_id"]

    # When the admin opens it from the overview's form
    log_in(page, stack.admin_token)
    page.get_by_label("Workflow run id").fill(run_id)
    page.get_by_role("button", name="Open workflow run").click()
    expect(page).to_have_url(f"{stack.url}/dashboard#/workflow/{run_id}")

    # Then the run completes and every step shows its state and tasks
    expect(page.locator("#workflow-status")).to_have_text("completed")
    expect(page.locator("[data-field='name']")).to_have_text("dash:flow")
    expect(page.locator("[data-field='error']")).to_have_text("—")
    expect(page.locator("#steps tbody tr")).to_have_count(2)
    first, second = page.locator("tr[data-step='0']"), page.locator("tr[data-step='1']")
    expect(first.locator("[data-col='group']")).to_have_text("no")
    expect(second.locator("[data-col='group']")).to_have_text("yes")
    expect(first.locator("[data-col='state']")).to_have_text("completed")
    expect(second.locator("[data-col='state']")).to_have_text("completed")
    expect(second.locator("li")).to_have_count(2)
    expect(second.locator("li[data-task='dash:limited'] [data-col='task-state']")).to_have_text("completed")
    screenshot(page, "workflow-1280x800")

    # And a step's task links to its task page
    run = stack.api("GET", f"/api/jobs/workflows/{run_id}").json()
    task = run["steps"][0]["tasks"][0]
    first.get_by_role("link", name="dash:echo").click()
    expect(page.locator("[data-field='id']")).to_have_text(task["id"])
