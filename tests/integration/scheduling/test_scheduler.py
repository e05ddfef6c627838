"""The scheduler against the real Redis: exactly-once claims, catch-up, reconcile, dynamic schedules."""

from __future__ import annotations

import logging
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from dramatiq.message import Message

import jobkit
from jobkit.config.jobs_file import load_project
from jobkit.config.model import Project, ScheduleSpec
from jobkit.errors import PayloadError, ScheduleError, UnknownTask
from jobkit.scheduling.dynamic import Schedules
from jobkit.scheduling.fire_loop import Scheduler
from jobkit.scheduling.periodiq import periodiq_schedules
from jobkit.scheduling.store import ScheduleStore
from jobkit.services.client import Client
from tests.support import FakeClock, wait_for


def scheduled(redis_client: redis.Redis, namespace: str, queue: str = "default") -> list[Message[Any]]:
    """Every message waiting in ``queue`` that a scheduler enqueued (no worker runs in these tests)."""
    raw = cast(list[bytes], redis_client.hvals(f"{namespace}:{queue}.msgs"))
    messages = [Message.decode(item) for item in raw]
    return [m for m in messages if "schedule_id" in m.options]


def nominal_ms(message: Message[Any]) -> int:
    return int(datetime.fromisoformat(message.options["scheduled_at"]).timestamp() * 1000)


def start_schedulers(client: Client, count: int, stop: threading.Event) -> list[Scheduler]:
    """``count`` schedulers, each running in a thread until ``stop`` is set."""
    schedulers = [Scheduler(client) for _ in range(count)]
    for scheduler in schedulers:
        threading.Thread(target=scheduler.run, args=(stop,), daemon=True).start()
    return schedulers


def seen_by_all(client: Client, schedulers: list[Scheduler]) -> bool:
    """Every scheduler acts on the latest definitions in Redis."""
    latest = ScheduleStore(client.broker.lua).version()
    return all(scheduler.version == latest for scheduler in schedulers)


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_three_schedulers_enqueue_each_fire_time_exactly_once(
    client: Client, redis_client: redis.Redis, namespace: str, stop: threading.Event
) -> None:
    # Given an @every 1s entry and three schedulers on the same Redis
    Schedules(client).recurring("test:noop", every="1s")
    start_schedulers(client, 3, stop)

    # When four fire times have passed
    wait_for(lambda: len(scheduled(redis_client, namespace, "low")) >= 4, timeout=10, what="4 fires")
    stop.set()

    # Then each nominal second was enqueued once, with no gap, each carrying scheduled_at and the schedule id
    fires = sorted(nominal_ms(m) for m in scheduled(redis_client, namespace, "low"))
    assert len(fires) == len(set(fires))
    assert fires == list(range(fires[0], fires[-1] + 1000, 1000))


def test_an_api_schedule_fires_within_a_second_of_its_time_and_unschedule_stops_it(
    client: Client, redis_client: redis.Redis, namespace: str, stop: threading.Event
) -> None:
    # Given two schedulers already running, which have read the (empty) schedule: the entry below is a change they
    # must notice
    schedulers = start_schedulers(client, 2, stop)
    wait_for(lambda: seen_by_all(client, schedulers), what="the schedulers to read the schedule")

    # When a one-time entry is added for 1.5 s from now
    at = datetime.now(UTC) + timedelta(seconds=1.5)
    once_id = jobkit.schedule_once("test:record", {"key": f"{namespace}:once"}, at)

    # Then it is enqueued within a second of its time, once, and the entry is gone afterwards
    [message] = wait_for(lambda: scheduled(redis_client, namespace), timeout=5, what="the one-time fire")
    assert message.options["schedule_id"] == once_id
    assert message.kwargs == {"key": f"{namespace}:once"}
    assert 0 <= message.message_timestamp - int(at.timestamp() * 1000) < 1000
    wait_for(lambda: all(info.id != once_id for info in jobkit.list_schedules()), what="the one-time entry removed")

    # And a recurring entry fires every second until it is removed
    every_id = jobkit.schedule_recurring("test:record", {"key": f"{namespace}:rec"}, every=timedelta(seconds=1))
    [info] = [i for i in jobkit.list_schedules() if i.id == every_id]
    assert info.spec == "@every 1s" and info.next_run_at is not None and info.source == "api"

    def recurring() -> list[Message[Any]]:
        return [m for m in scheduled(redis_client, namespace) if m.options["schedule_id"] == every_id]

    wait_for(lambda: len(recurring()) >= 2, timeout=5, what="two recurring fires")
    [info] = [i for i in jobkit.list_schedules() if i.id == every_id]
    fired_at = {m.options["scheduled_at"] for m in recurring()}
    assert info.last_run_at is not None and info.last_run_at.isoformat(timespec="milliseconds") in {
        datetime.fromisoformat(at).isoformat(timespec="milliseconds") for at in fired_at
    }
    assert jobkit.unschedule(every_id) is True
    wait_for(lambda: seen_by_all(client, schedulers), what="the schedulers to see the removal")
    settled = len(recurring())  # a fire claimed before they saw it has landed by now
    time.sleep(2.0)  # observing that nothing more happens needs time to pass
    assert len(recurring()) == settled
    assert jobkit.unschedule(every_id) is False


def test_dynamic_schedules_are_checked_like_dispatch(client: Client) -> None:
    schedules = Schedules(client)
    with pytest.raises(UnknownTask, match="did you mean 'test:greet'"):
        schedules.recurring("test:grete", {"name": "x"}, every="1m")
    with pytest.raises(PayloadError, match="missing payload field 'name'"):
        schedules.recurring("test:greet", {}, cron="0 * * * *")
    with pytest.raises(ScheduleError, match="minute 61 is out of range 0-59"):
        schedules.recurring("test:noop", cron="61 * * * *")
    with pytest.raises(ScheduleError, match="at least 1s"):
        schedules.recurring("test:noop", every="500ms")
    with pytest.raises(ScheduleError, match="exactly one"):
        schedules.recurring("test:noop", every="1m", cron="* * * * *")
    with pytest.raises(ScheduleError, match="unknown timezone"):
        schedules.recurring("test:noop", cron="0 2 * * *", timezone="Europe/Berln")


def test_a_yaml_entry_cannot_be_removed_through_the_api(client: Client) -> None:
    store = ScheduleStore(client.broker.lua)
    store.reconcile([ScheduleSpec("nightly", "test:noop", "@daily", source="yaml:nightly")])
    with pytest.raises(ScheduleError, match=r"declared in schedules\.yaml; remove it there"):
        Schedules(client).remove("nightly")


def test_missed_fires_within_the_grace_are_coalesced_and_older_ones_skipped(
    client: Client, redis_client: redis.Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an @every 1s entry created at T, and no scheduler running for 10.5 s
    t0 = 1_900_000_000_000
    ScheduleStore(client.broker.lua).add(ScheduleSpec("tick", "test:noop", "@every 1s", source="api"), created_ms=t0)
    clock = FakeClock((t0 + 10_500) / 1000)
    scheduler = Scheduler(client, grace=timedelta(seconds=5), clock=clock)

    # When a scheduler with a 5 s grace comes up
    with caplog.at_level(logging.WARNING, logger="jobkit.scheduler"):
        scheduler.tick()

    # Then T+1..T+5 are skipped (logged), T+6..T+10 are coalesced into one enqueue for T+10
    [message] = scheduled(redis_client, namespace, "low")
    assert nominal_ms(message) == t0 + 10_000
    assert "skipped fire times from 2030-03-17T17:46:41.000+00:00" in caplog.text
    assert "4 missed fire time(s) coalesced" in caplog.text

    # And the next tick, on time, fires T+11 only
    clock.now = (t0 + 11_000) / 1000
    scheduler.tick()
    assert sorted(nominal_ms(m) for m in scheduled(redis_client, namespace, "low")) == [t0 + 10_000, t0 + 11_000]


def test_a_restarted_scheduler_does_not_refire_what_another_enqueued(
    client: Client, redis_client: redis.Redis, namespace: str
) -> None:
    t0 = 1_900_000_000_000
    ScheduleStore(client.broker.lua).add(ScheduleSpec("tick", "test:noop", "@every 1s", source="api"), created_ms=t0)
    first = Scheduler(client, clock=FakeClock((t0 + 3_000) / 1000))
    first.tick()
    # a scheduler that starts afterwards resumes from the last enqueued fire time, not from the entry's creation
    second = Scheduler(client, clock=FakeClock((t0 + 3_200) / 1000))
    second.tick()
    assert [nominal_ms(m) for m in scheduled(redis_client, namespace, "low")] == [t0 + 3_000]


def test_reconcile_adds_changes_and_removes_and_leaves_unchanged_entries_alone(client: Client, namespace: str) -> None:
    store = ScheduleStore(client.broker.lua)
    keep = ScheduleSpec("keep", "test:noop", "@hourly", source="yaml:keep")
    change = ScheduleSpec("change", "test:noop", "@daily", source="yaml:change")
    drop = ScheduleSpec("drop", "test:noop", "@daily", source="yaml:drop")
    api = ScheduleSpec("api-1", "test:noop", "@daily", source="api")
    store.reconcile([keep, change, drop], now_ms=1_000)
    store.add(api)
    store.mark_fired("keep", 3_600_000)
    store.mark_fired("change", 86_400_000)

    done = store.reconcile([keep, ScheduleSpec("change", "test:noop", "@weekly", source="yaml:change")], now_ms=5_000)

    assert (done.added, done.changed, done.removed, done.unchanged) == ((), ("change",), ("drop",), ("keep",))
    entries = store.all()
    assert set(entries) == {"keep", "change", "api-1"}  # run-time entries are not the file's to remove
    assert entries["keep"].created_ms == 1_000  # untouched: its next fire is unchanged
    assert store.last_fired() == {"keep": 3_600_000}  # the changed entry starts afresh
    assert entries["change"].spec.spec == "@weekly" and entries["change"].created_ms == 5_000


def test_definitions_are_json_with_their_source(client: Client, redis_client: redis.Redis, namespace: str) -> None:
    entry_id = Schedules(client).recurring("test:greet", {"name": "Ann"}, cron="0 8 * * MON", timezone="Europe/Berlin")
    import json

    stored = json.loads(cast(bytes, redis_client.hget(f"{namespace}:__schedules__", entry_id)))
    assert stored["source"] == "api" and stored["spec"] == "0 8 * * MON" and stored["payload"] == {"name": "Ann"}
    assert stored["timezone"] == "Europe/Berlin"


PERIODIQ_MODULE = """
import dramatiq
from dramatiq.brokers.stub import StubBroker
from periodiq import PeriodiqMiddleware, cron

broker = StubBroker()
broker.add_middleware(PeriodiqMiddleware())
dramatiq.set_broker(broker)

@dramatiq.actor(periodic=cron("0 0 * * 0"))
def weekly_sunday():
    pass

@dramatiq.actor(periodic=cron("@weekly"))
def weekly_named():
    pass

@dramatiq.actor
def not_periodic():
    pass
"""


def test_periodiq_actors_become_entries_read_with_crons_rules(
    tmp_path: Path, write_yaml: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "legacy_periodic.py").write_text(textwrap.dedent(PERIODIQ_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    project = load_project(
        write_yaml(
            """
            queues: {default: {weight: 1}}
            tasks:
              weekly_sunday: {handler: "legacy_periodic:weekly_sunday.fn"}
              weekly_named: {handler: "legacy_periodic:weekly_named.fn"}
            """
        )
    )
    try:
        entries = periodiq_schedules(["legacy_periodic"], project)
    finally:
        sys.modules.pop("legacy_periodic", None)

    assert [(e.id, e.task, e.spec, e.source) for e in entries] == [
        ("periodiq.weekly_sunday", "weekly_sunday", "0 0 * * 0", "periodiq:weekly_sunday"),
        ("periodiq.weekly_named", "weekly_named", "@weekly", "periodiq:weekly_named"),
    ]
    from jobkit.scheduling.fire_loop import trigger_for

    sunday = trigger_for(entries[0]).next_after(int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000))
    assert sunday is not None and datetime.fromtimestamp(sunday / 1000, UTC).weekday() == 6


def test_a_periodiq_actor_missing_from_jobs_yaml_is_refused_with_the_fix(
    tmp_path: Path, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "legacy_periodic2.py").write_text(textwrap.dedent(PERIODIQ_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(jobkit.JobkitError) as raised:
            periodiq_schedules(["legacy_periodic2"], project)
    finally:
        sys.modules.pop("legacy_periodic2", None)
    assert "actor 'weekly_sunday': not a task in" in str(raised.value)
    assert "handler: 'legacy_periodic2:weekly_sunday.fn'" in str(raised.value)


def test_fires_are_counted_per_nominal_time(client: Client, redis_client: redis.Redis, namespace: str) -> None:
    # Two schedulers whose clocks agree race for the same fire time: one enqueue between them
    t0 = 1_900_000_000_000
    ScheduleStore(client.broker.lua).add(ScheduleSpec("tick", "test:noop", "@every 1s", source="api"), created_ms=t0)
    for _ in range(2):
        Scheduler(client, clock=FakeClock((t0 + 1_000) / 1000)).tick()
    assert Counter(nominal_ms(m) for m in scheduled(redis_client, namespace, "low")) == {t0 + 1_000: 1}
