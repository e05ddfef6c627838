"""The in-process arbiter: weighted lottery, strict order, work conservation, pause hand-back."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from queue import Empty

import pytest

from jobkit.engine.work_queue import WorkQueue


@dataclass
class FakeMessage:
    queue_name: str
    message_id: str = ""


@dataclass
class Item:
    message: FakeMessage
    priority: int = field(default=0)


WEIGHTS = {"critical": 6, "default": 3, "low": 1}


def fill(queue: WorkQueue, name: str, count: int) -> None:
    for i in range(count):
        queue.put(Item(FakeMessage(name, f"{name}-{i}")))


def test_weighted_picks_follow_the_weights_when_every_queue_has_work() -> None:
    queue = WorkQueue(WEIGHTS, rng=random.Random(1))
    for name in WEIGHTS:
        fill(queue, name, 10_000)
    picks = Counter(queue.get(timeout=0).message.queue_name for _ in range(10_000))
    assert abs(picks["critical"] / 10_000 - 0.6) < 0.02
    assert abs(picks["default"] / 10_000 - 0.3) < 0.02
    assert abs(picks["low"] / 10_000 - 0.1) < 0.02


def test_an_empty_queue_gives_its_share_away() -> None:
    queue = WorkQueue(WEIGHTS, rng=random.Random(2))
    fill(queue, "low", 100)
    assert [queue.get(timeout=0).message.queue_name for _ in range(100)] == ["low"] * 100
    with pytest.raises(Empty):
        queue.get(timeout=0.01)


def test_strict_takes_the_heaviest_queue_first_and_waits_while_it_may_have_more() -> None:
    queue = WorkQueue(WEIGHTS, strict=True)
    fill(queue, "default", 3)
    # critical's consumer has not come back yet: it may have tasks in Redis, so default waits
    with pytest.raises(Empty):
        queue.get(timeout=0.01)
    fill(queue, "critical", 2)
    assert [queue.get(timeout=0).message.queue_name for _ in range(2)] == ["critical", "critical"]
    queue.note_fetch("critical", found=False)
    assert [queue.get(timeout=0).message.queue_name for _ in range(3)] == ["default"] * 3


def test_take_all_returns_a_paused_queues_messages_and_settles_the_count() -> None:
    queue = WorkQueue(WEIGHTS)
    fill(queue, "low", 3)
    fill(queue, "default", 1)
    taken = queue.take_all("low")
    assert [m.message_id for m in taken] == ["low-0", "low-1", "low-2"]
    assert queue.unfinished_tasks == 1
    assert queue.get(timeout=0).message.queue_name == "default"
    queue.task_done()
    queue.join()  # returns: nothing unfinished


def test_inside_a_queue_the_lowest_actor_priority_comes_first_then_arrival_order() -> None:
    # Dramatiq's PriorityQueue order: lower numbers are higher priorities, equal ones first come first served.
    queue = WorkQueue(WEIGHTS, rng=random.Random(4))
    for n, priority in enumerate([100, 0, 100, 5, 0]):
        queue.put(Item(FakeMessage("default", f"m{n}"), priority=priority))
    taken = [queue.get(timeout=0).message.message_id for _ in range(5)]
    assert taken == ["m1", "m4", "m3", "m0", "m2"]


def test_a_paused_queue_hands_back_its_messages_in_the_order_they_would_have_run() -> None:
    queue = WorkQueue(WEIGHTS)
    for n, priority in enumerate([10, 0, 10, 0]):
        queue.put(Item(FakeMessage("low", f"m{n}"), priority=priority))
    assert [message.message_id for message in queue.take_all("low")] == ["m1", "m3", "m0", "m2"]
    assert queue.qsize() == 0 and queue.unfinished_tasks == 0


def test_strict_wakes_a_waiting_thread_when_the_heavier_queue_comes_back_empty() -> None:
    import threading

    queue = WorkQueue(WEIGHTS, strict=True)
    fill(queue, "default", 1)
    taken: list[str] = []
    waiter = threading.Thread(target=lambda: taken.append(queue.get(timeout=10).message.queue_name))
    waiter.start()
    queue.note_fetch("critical", found=False)
    waiter.join(timeout=5)
    assert taken == ["default"]
