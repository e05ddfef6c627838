"""A running task's thread state: cancel interrupts a busy loop and a long sleep at once, and never after the end."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from jobkit.engine import running as running_module
from jobkit.engine.running import (
    Running,
    TaskCanceledInterrupt,
    cancelled,
    enter,
    interruptible_sleep,
    leave,
    progress,
)


def _run_in_thread(body: Any, ready: threading.Event) -> tuple[threading.Thread, dict[str, Any], Running]:
    """Start ``body`` inside a Running on a new thread, once ``ready`` is set by it; returns the thread, what
    happened and the Running."""
    outcome: dict[str, Any] = {}
    holder: dict[str, Running] = {}

    def main() -> None:
        run = Running("m1", "default")
        holder["running"] = run
        enter(run)
        try:
            body()
            outcome["result"] = "finished"
        except TaskCanceledInterrupt as exc:
            outcome["result"] = "canceled"
            outcome["by"] = exc.by
        finally:
            leave()
            outcome["ended_at"] = time.monotonic()

    thread = threading.Thread(target=main)
    thread.start()
    assert ready.wait(5)
    return thread, outcome, holder["running"]


def _short_sleeps(ready: threading.Event) -> None:
    for _ in range(300):
        ready.set()
        interruptible_sleep(0.1)


def _long_sleep(ready: threading.Event) -> None:
    ready.set()
    interruptible_sleep(30)


def _busy(ready: threading.Event) -> None:
    for _ in range(10**9):
        ready.set()
        sum(range(100))


@pytest.mark.parametrize("body", [_short_sleeps, _long_sleep, _busy])
def test_cancel_interrupts_within_a_second(body: Any) -> None:
    ready = threading.Event()
    thread, outcome, run = _run_in_thread(lambda: body(ready), ready)
    assert ready.wait(5)
    canceled_at = time.monotonic()
    run.cancel("alice")
    thread.join(5)
    assert not thread.is_alive()
    assert outcome["result"] == "canceled"
    assert outcome["ended_at"] - canceled_at < 1.0


def test_cancelled_turns_true_and_the_sleep_that_follows_raises_with_who() -> None:
    seen: list[bool] = []
    ready = threading.Event()

    def body() -> None:
        seen.append(cancelled())
        ready.set()
        while not cancelled():
            time_sleep = running_module._stdlib_sleep  # not interruptible: checks cooperatively
            try:
                time_sleep(0.01)
            except TaskCanceledInterrupt:
                break
        seen.append(cancelled())
        interruptible_sleep(1)

    thread, outcome, run = _run_in_thread(body, ready)
    assert ready.wait(5)
    run.cancel("bob")
    thread.join(5)
    assert seen == [False, True]
    assert outcome["result"] == "canceled"


def test_no_interrupt_reaches_a_thread_after_its_task_ended() -> None:
    done = threading.Event()
    thread, outcome, run = _run_in_thread(done.set, done)
    thread.join(5)
    assert outcome["result"] == "finished"
    run.cancel("late")  # the thread id is gone: nothing is raised anywhere
    assert run.canceled_by == "late"


def test_sleep_outside_a_task_is_the_stdlib_one() -> None:
    assert running_module.current() is None
    started = time.monotonic()
    interruptible_sleep(0.01)
    assert time.monotonic() - started >= 0.01
    with pytest.raises(ValueError, match="non-negative"):
        running_module._stdlib_sleep(-1)


def test_progress_keeps_the_latest_and_hands_each_change_to_the_writer_once() -> None:
    run = Running("m2", "default")
    enter(run)
    try:
        assert run.unwritten_progress() is None  # nothing reported yet
        for i in range(100_000):
            progress(i + 1, 100_000, note="rows")
        first = run.unwritten_progress()
        assert first is not None and (first["done"], first["percent"], first["note"]) == (100_000, 100.0, "rows")
        assert run.unwritten_progress() is None  # unchanged since it was written
        progress(5)
        again = run.unwritten_progress()
        assert again is not None and (again["done"], again["total"], again["percent"]) == (5, None, None)
    finally:
        leave()
    assert run.progress_written
    progress(5)  # outside a task: nothing happens


def test_an_asyncio_handler_on_dramatiqs_event_loop_thread_reports_to_the_task_of_the_worker_thread() -> None:
    import logging

    from dramatiq.asyncio import EventLoopThread

    loop_thread = EventLoopThread(logging.getLogger("test"))
    loop_thread.start()
    run = Running("m3", "default")
    seen: dict[str, Any] = {}

    async def handler() -> None:
        seen["thread"] = threading.get_ident()
        progress(7, 10, note="async")

    enter(run)
    try:
        loop_thread.run_coroutine(handler())
    finally:
        leave()
        loop_thread.stop()  # type: ignore[no-untyped-call]
    assert seen["thread"] != threading.get_ident()  # it ran on the loop's thread
    reported = run.progress
    assert reported is not None and (reported["done"], reported["percent"], reported["note"]) == (7, 70.0, "async")


def test_progress_on_a_thread_that_never_ran_a_task_does_nothing() -> None:
    outcome: dict[str, Any] = {}

    def main() -> None:
        progress(1, 2)
        outcome["current"] = running_module.current()

    thread = threading.Thread(target=main)
    thread.start()
    thread.join(5)
    assert outcome == {"current": None}
