"""Search over every stored task: what matches, what never does (sensitive fields), filters, and cursor paging."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import cast

import dramatiq
import pytest
import redis

from jobkit.errors import InvalidRequest, TooBusy, UnknownQueue, UnknownTask
from jobkit.services.client import Client
from jobkit.services.queues import Queues
from jobkit.services.search import LARGEST_SEARCHED, Search, SearchPage
from tests.support import wait_for
from tests.support.filling import WORDS, fill_tasks, state_of

SEARCH_JOBS = """
queues: {default: {weight: 2}, low: {weight: 1}}
defaults: {retention: 1h}
tasks:
  s:mail: {handler: "tests.handlers:accept"}
  s:later: {handler: "tests.handlers:accept", queue: low}
  s:secret: {handler: "tests.handlers:accept", sensitive: [token, "headers.authorization", "url.query"]}
  s:fails: {handler: "tests.handlers:always_fails", max_retries: 0}
  s:bulky: {handler: "tests.handlers:accept", max_payload: 1MiB, queue: low}
"""


@pytest.fixture
def app_client(make_client: Callable[[str], Client]) -> Client:
    return make_client(SEARCH_JOBS)


@pytest.fixture
def search(app_client: Client) -> Search:
    return Search(Queues(app_client))


def ids(page: SearchPage) -> set[str]:
    return {info.id for info in page.tasks}


def everything(search: Search, text: str, size: int = 50, **filters: object) -> tuple[list[str], int]:
    """Follow the cursors to the end: every id found (in order, duplicates kept) and the number of answers."""
    found: list[str] = []
    cursor, answers = None, 0
    while True:
        page = search.search(text, cursor=cursor, size=size, **filters)  # type: ignore[arg-type]
        found.extend(info.id for info in page.tasks)
        answers += 1
        cursor = page.cursor
        if cursor is None:
            return found, answers


def test_a_task_is_found_by_id_prefix_type_payload_and_error_in_any_state_and_queue(
    app_client: Client, search: Search, namespace: str
) -> None:
    # Given a task that failed for good with a telling error, and tasks in other states and both queues
    failed = app_client.dispatch("s:fails", key=f"{namespace}:printer")
    worker = dramatiq.Worker(app_client.broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        wait_for(lambda: Queues(app_client).stats("default").archived == 1, what="s:fails to be archived")
    finally:
        worker.stop()
    pending = app_client.dispatch("s:mail", subject="Quarterly Invoice", to="ann@example.com")
    scheduled = app_client.dispatch("s:mail", subject="reminder", delay=timedelta(hours=1))
    low = app_client.dispatch("s:later", note="Kumquat season", delay=timedelta(hours=2))

    # Then each is found by what an operator remembers of it, with its queue and state
    by_payload = search.search("invoice")  # any case
    assert [(t.id, t.queue, t.state) for t in by_payload.tasks] == [(pending.id, "default", "pending")]
    assert by_payload.cursor is None
    assert [(t.id, t.queue, t.state) for t in search.search("KUMQUAT").tasks] == [(low.id, "low", "scheduled")]
    assert ids(search.search("reminder")) == {scheduled.id}
    assert ids(search.search(low.id[:8])) == {low.id}
    assert ids(search.search("s:later")) == {low.id}
    by_error = search.search("ATTEMPT 1 failed")
    assert ids(by_error) == {failed.id}
    assert by_error.tasks[0].state == "archived" and "attempt 1 failed" in (by_error.tasks[0].last_error or "")

    # And a word no task has finds nothing, having looked at every task
    miss = search.search("nothing-like-this")
    assert miss.tasks == [] and miss.cursor is None and miss.scanned >= 4


def test_sensitive_fields_never_match_sealed_clear_or_masked(app_client: Client, search: Search) -> None:
    ref = app_client.dispatch(
        "s:secret",
        token="tok-clear-value-123",
        headers={"authorization": "Bearer abcdefgh", "accept": "text/plain"},
        url="https://hooks.example.test/cb?sig=querysecret",
        note="visible words",
    )
    for hidden in ("tok-clear", "abcdefgh", "querysecret", "sig=", "jobkit:sealed", "***", "*"):
        assert search.search(hidden).tasks == [], hidden

    found = search.search("visible")
    assert ids(found) == {ref.id}
    payload = found.tasks[0].payload
    assert payload["token"] == "***" and payload["headers"]["authorization"] == "***"
    assert payload["url"] == "https://hooks.example.test/cb?***"
    assert ids(search.search("hooks.example")) == {ref.id}  # the URL outside its query string matches
    assert ids(search.search("text/plain")) == {ref.id}  # a field beside a sensitive one still matches
    assert search.search("authorization").tasks == []  # the sensitive field itself, key and all, never matches


def test_text_is_plain_text_never_a_pattern_and_json_escapes_are_looked_through(
    app_client: Client, search: Search
) -> None:
    quoted = app_client.dispatch("s:mail", body='She said "hi"\nand left', delay=3600)
    pattern = app_client.dispatch("s:mail", body="price: 100% (approx.) [a-z]+", delay=3600)
    unicode = app_client.dispatch("s:mail", body="Ünïcode ✓ naïve", delay=3600)
    number = app_client.dispatch("s:mail", order=4242, delay=3600)

    assert ids(search.search('said "hi"')) == {quoted.id}
    assert ids(search.search('hi"\nand')) == {quoted.id}
    assert ids(search.search("100% (approx.)")) == {pattern.id}
    assert ids(search.search("[a-z]+")) == {pattern.id}
    assert search.search("%d").tasks == [] and search.search(".*").tasks == []
    assert ids(search.search("Ünïcode ✓")) == {unicode.id}
    assert ids(search.search("NAÏVE")) == set()  # only ASCII letters fold: "Ï" is not "ï"
    assert ids(search.search("NAï")) == {unicode.id}
    assert ids(search.search("4242")) == {number.id}


def test_numbers_and_option_names_in_the_stored_message_do_not_match(app_client: Client, search: Search) -> None:
    # Every stored message has timestamps, a rid and option names; only the id, type, payload and error count
    refs = [app_client.dispatch("s:mail", value="abc", delay=3600) for _ in range(30)]
    for text in ("1", "7", "options", "message_timestamp", "redis_message_id", "default"):
        found = ids(search.search(text))
        assert found == {r.id for r in refs if r.id.startswith(text)}, text


def test_filters_by_queue_state_and_task_type(app_client: Client, search: Search) -> None:
    mail_now = app_client.dispatch("s:mail", topic="common")
    mail_later = app_client.dispatch("s:mail", topic="common", delay=3600)
    low_later = app_client.dispatch("s:later", topic="common", delay=3600)

    assert ids(search.search("common")) == {mail_now.id, mail_later.id, low_later.id}
    assert ids(search.search("common", queues=["low"])) == {low_later.id}
    assert ids(search.search("common", states=["pending"])) == {mail_now.id}
    assert ids(search.search("common", states=["scheduled", "archived"])) == {mail_later.id, low_later.id}
    assert ids(search.search("common", task="s:mail", states=["scheduled"])) == {mail_later.id}
    assert ids(search.search("", task="s:later")) == {low_later.id}
    assert search.search("common", states=["completed"]).tasks == []


def test_cursor_paging_returns_every_match_once_however_small_the_steps(app_client: Client, namespace: str) -> None:
    # Given 1,500 stored tasks over every state of both queues
    count = 1500
    fill_tasks(app_client, count, [("s:mail", {"subject": "Invoice"}), ("s:later", {"subject": "Invoice"})])
    expected_bravo = {n for n in range(count) if WORDS[n % len(WORDS)] == "bravo"}
    queues = Queues(app_client)

    # When a word of a few hundred of them is searched, one answer of 50 at a time
    search = Search(queues)
    found, answers = everything(search, "bravo", size=50)

    # Then every one of them comes back exactly once, over several answers
    assert len(found) == len(expected_bravo) == len(set(found))
    assert answers > len(found) // 50
    # And the same holds with the smallest steps: one batch per call, no time to spare, pages of 7 (which stop
    # inside a batch and resume there)
    tiny = Search(queues, budget=timedelta(0), call_entries=1)
    found_tiny, answers_tiny = everything(tiny, "bravo", size=7)
    assert sorted(found_tiny) == sorted(found)
    assert answers_tiny > answers
    # And the states they are in are the ones they were stored in
    states = {t.state for t in search.search("bravo", size=500).tasks}
    assert states == {state_of(n, count) for n in expected_bravo}


def test_an_answer_stops_at_its_time_budget_with_a_cursor(app_client: Client) -> None:
    fill_tasks(app_client, 3000, [("s:mail", {"subject": "Invoice"})])
    quick = Search(Queues(app_client), budget=timedelta(0), call_entries=1)
    started = time.monotonic()
    page = quick.search("nowhere-to-be-found")
    assert time.monotonic() - started < 0.1
    assert page.tasks == [] and page.cursor is not None and 0 < page.scanned < 3000
    rest, _ = everything(quick, "nowhere-to-be-found")
    assert rest == []


def test_bad_input_is_refused_saying_what_and_where(app_client: Client, search: Search) -> None:
    with pytest.raises(InvalidRequest, match=r"cursor: 'garbage' is not a cursor a search answered"):
        search.search("x", cursor="garbage")
    fill_tasks(app_client, 50, [("s:mail", {"subject": "Invoice"})])
    cursor = Search(search.queues, budget=timedelta(0), call_entries=1).search("e", size=1).cursor
    assert cursor is not None
    with pytest.raises(InvalidRequest, match="cursor: it belongs to a search with other text or filters"):
        search.search("other", cursor=cursor)
    with pytest.raises(InvalidRequest, match=r"state: unknown state 'archive' \(did you mean 'archived'\?\)"):
        search.search("x", states=["archive"])
    with pytest.raises(UnknownQueue, match="did you mean 'low'"):
        search.search("x", queues=["lwo"])
    with pytest.raises(UnknownTask):
        search.search("x", task="s:mial")
    with pytest.raises(InvalidRequest, match="q: at most 200 characters, found 201"):
        search.search("x" * 201)


# -- bounds: what one script call may cost Redis, what one process runs at once --------------------------------------
@pytest.fixture
def slowlog(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    """The session's Redis logging every command's duration (restored after the test)."""
    before = cast(dict[str, str], redis_client.config_get("slowlog-*"))
    redis_client.config_set("slowlog-log-slower-than", 0)
    redis_client.config_set("slowlog-max-len", 100_000)
    redis_client.slowlog_reset()
    yield redis_client
    for name, value in before.items():
        redis_client.config_set(name, value)
    redis_client.slowlog_reset()


def script_calls_ms(log: redis.Redis) -> list[float]:
    """How long (ms) each script call searching for "zzz" took, as Redis measured it."""
    entries = log.slowlog_get(100_000)
    calls = []
    for entry in entries:
        command = entry["command"]
        words = command.split() if isinstance(command, bytes) else str(command).encode().split()
        if words[:1] in ([b"EVALSHA"], [b"EVAL"]) and b"zzz" in words:
            calls.append(entry["duration"] / 1000)
    return calls


def test_large_payloads_never_hold_redis_for_long_and_normal_ones_are_still_found(
    app_client: Client, slowlog: redis.Redis
) -> None:
    # Given 60 scheduled tasks of about 900 KB each (one of them with the text), and one normal task with it, in
    # another queue than 2,000 small ones (searched first: the batches grow large on them, and shrink for the others)
    fill_tasks(app_client, 2000, [("s:mail", {"subject": "Invoice"})])
    filler = " ".join(f"word{n}" for n in range(120_000))[:900_000]
    bulky = [app_client.dispatch("s:bulky", body=filler, delay=timedelta(hours=1)) for _ in range(59)]
    hidden = app_client.dispatch("s:bulky", body=filler[:-10] + " zzz", delay=timedelta(hours=1))
    normal = app_client.dispatch("s:mail", subject="the zzz report", delay=timedelta(hours=1))
    search = Search(Queues(app_client))
    slowlog.slowlog_reset()

    # When the text is searched to the end of the store
    found, answers = everything(search, "zzz")

    # Then no single script call held Redis for long (before the bound, one call took over a second)
    calls = script_calls_ms(slowlog)
    assert len(calls) >= answers
    assert max(calls) < 100, sorted(calls)[-5:]
    # And the normal task is found; the oversized one is not searched at all (the README says so)
    assert found == [normal.id]
    assert hidden.id not in found and len(bulky) == 59


def test_a_message_just_under_the_largest_searched_is_still_searched(app_client: Client) -> None:
    body = "y" * (LARGEST_SEARCHED - 2000) + " zzz"
    ref = app_client.dispatch("s:bulky", body=body, delay=timedelta(hours=1))
    assert everything(Search(Queues(app_client)), "zzz")[0] == [ref.id]
    too_big = Search(Queues(app_client), largest=1000)  # the same message, over a smaller limit: skipped
    assert everything(too_big, "zzz")[0] == []


def test_a_process_runs_at_most_its_cap_of_searches_at_once(app_client: Client, redis_client: redis.Redis) -> None:
    # Given a search held inside Redis (scripts wait while writes are paused), with room for one search at a time
    app_client.dispatch("s:mail", subject="Invoice")
    search = Search(Queues(app_client), concurrent=1)
    answers: list[SearchPage] = []
    redis_client.client_pause(10_000, all=False)
    try:
        first = threading.Thread(target=lambda: answers.append(search.search("invoice")), daemon=True)
        first.start()
        wait_for(lambda: search.running == 1, what="the first search to start")
        # Then a second one is refused at once, saying why, rather than queued behind it
        with pytest.raises(TooBusy, match="already runs 1 searches at once"):
            search.search("invoice")
    finally:
        redis_client.client_unpause()
    first.join(timeout=10)
    assert [len(page.tasks) for page in answers] == [1]
    # And once it ended, the next one runs (a refused or failed search gives its place back too)
    with pytest.raises(InvalidRequest):
        search.search("x", cursor="garbage")
    assert search.running == 0 and len(search.search("invoice").tasks) == 1


def test_a_forged_cursor_is_refused_naming_it(app_client: Client, search: Search) -> None:
    fill_tasks(app_client, 50, [("s:mail", {"subject": "Invoice"})])
    cursor = Search(search.queues, budget=timedelta(0), call_entries=1).search("e", size=1).cursor
    assert cursor is not None
    digest = cursor.rsplit(".", 1)[1]
    forgeries = (
        f"0.0.0.4.{digest}",
        f"1.99999999999999999999.0.4.{digest}",
        f"1.{2**64}.0.4.{digest}",
        f"99.0.0.4.{digest}",
        f"1.0.0.0.{digest}",
        f"1.0.0.501.{digest}",
        f"1.\u0661.0.4.{digest}",
    )
    for forged in forgeries:
        with pytest.raises(InvalidRequest, match=r"cursor: .* is not a cursor a search answered"):
            search.search("e", cursor=forged)
    assert search.search("e", cursor=cursor).scanned > 0  # the real one still resumes
