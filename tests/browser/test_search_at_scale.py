"""Finding one task among 100,000 from the dashboard's search page, by a word of its payload and of its error."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from jobkit.services.queues import Queues
from tests.support import wait_for
from tests.support.browser import Stack, screenshot
from tests.support.filling import fill_tasks

pytestmark = pytest.mark.slow

STORED = 100_000
# Nothing waits to run: the worker of this module's stack must not start on the filled tasks.
SHARES = (("scheduled", 0.4), ("retry", 0.2), ("archived", 0.1), ("completed", 0.3))


@pytest.mark.timeout(240)
def test_a_task_is_found_among_100000_by_a_word_of_its_payload_and_of_its_error(page: Page, stack: Stack) -> None:
    # Given 100,000 stored tasks across the states and queues, and two needles among them
    templates = [
        ("dash:echo", {"value": "invoice for order"}),
        ("dash:greet", {"name": "Ann Example"}),
        ("dash:urgent", {"name": "pager duty"}),
        ("dash:later", {"name": "weekly digest"}),
    ]
    fill_tasks(stack.client, STORED - 2, templates, SHARES)
    payload_word = f"zanzibar{uuid.uuid4().hex[:8]}"
    error_word = f"kumquat{uuid.uuid4().hex[:8]}"
    in_payload = stack.client.dispatch("dash:echo", value=f"parcel {payload_word} held", delay=timedelta(hours=1))
    failed = stack.client.dispatch("dash:fragile", key=f"{stack.namespace}:{error_word}", word=error_word)
    queues = Queues(stack.client)
    wait_for(lambda: queues.task("default", failed.id).state == "archived", timeout=20, what="the failure")
    assert sum(s.size + s.archived + s.completed for s in queues.all_stats()) == STORED

    # When an operator searches every task for a word of the first one's payload
    page.goto(f"/dashboard#token={stack.admin_token}")
    expect(page.locator("#queues")).to_be_visible()
    page.get_by_role("link", name="Search").click()
    page.get_by_label("Search every task").fill(payload_word)
    page.get_by_role("button", name="Search", exact=True).click()

    # Then it is the one task listed, after every stored task was looked at
    rows = page.locator("#results tbody tr[data-task]")
    expect(page.locator("#search-status")).to_contain_text("every task looked at", timeout=30_000)
    expect(rows).to_have_count(1)
    expect(page.locator(f"tr[data-task='{in_payload.id}'] [data-col='state']")).to_have_text("scheduled")
    looked = re.search(r"(\d+) looked at", page.locator("#search-status").text_content() or "")
    assert looked is not None and int(looked.group(1)) >= STORED
    screenshot(page, "search-100000-1280x800")

    # And a word of the other one's error finds it, archived
    page.get_by_label("Search every task").fill(error_word)
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#search-status")).to_contain_text("every task looked at", timeout=30_000)
    expect(rows).to_have_count(1)
    row = page.locator(f"tr[data-task='{failed.id}']")
    expect(row.locator("[data-col='state']")).to_have_text("archived")
    expect(row).to_contain_text(f"the <b>{error_word}</b> printer is on fire")
