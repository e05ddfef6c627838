"""Cross-queue priority inside a worker process: weighted (Asynq's semantics) or strict.

Dramatiq's worker threads take messages from one shared ``work_queue`` that every queue's consumer fills; it
orders by actor priority only, so a busy low queue gets as much attention as a critical one. The
:class:`~jobkit.engine.middleware.priority.QueuePriority` middleware swaps that queue (``before_worker_boot``, so the
stock ``Worker`` and ``dramatiq`` CLI keep working) for a :class:`WorkQueue` that keeps the messages of each queue in
Dramatiq's order (actor ``priority`` first, lower numbers first, then arrival) and, each time a thread takes work,
picks a queue:

- **weighted**: queue Q with probability w_Q / Σw over the queues that have work (an empty or paused queue's share
  goes to the others), or
- **strict**: the heaviest queue with work, and never a lighter one while a heavier queue may still have tasks in
  Redis (its consumer has not yet come back empty).
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections.abc import Mapping
from queue import Empty
from typing import Any

__all__ = ["WorkQueue"]


class WorkQueue:
    """A drop-in for the ``PriorityQueue`` Dramatiq's worker shares between its consumer and worker threads."""

    def __init__(self, weights: Mapping[str, int], *, strict: bool = False, rng: random.Random | None = None) -> None:
        self._weights = dict(weights)
        self._strict = strict
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._available = threading.Condition(self._lock)
        self._all_done = threading.Condition(self._lock)
        # Per queue, a heap of (actor priority, arrival number, item): Dramatiq's PriorityQueue order within it.
        self._items: dict[str, list[tuple[int, int, Any]]] = {}
        self._arrivals = itertools.count()
        self._order: list[str] = []
        self._maybe_more: dict[str, bool] = {}
        self.unfinished_tasks = 0
        self.reset()

    def reset(self) -> None:
        """Empty, as for a worker that boots (a broker may run several workers one after another)."""
        with self._lock:
            self._items = {name: [] for name in self._weights}
            # Heaviest first; a queue the project does not declare comes last.
            self._order = sorted(self._weights, key=lambda name: -self._weights[name])
            self._maybe_more = dict.fromkeys(self._weights, True)
            self.unfinished_tasks = 0

    # -- what consumers call ---------------------------------------------------------------------------------------
    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        name = item.message.queue_name
        with self._lock:
            if name not in self._items:
                self._items[name] = []
                self._order.append(name)
                self._weights.setdefault(name, 1)
                self._maybe_more[name] = True
            heapq.heappush(self._items[name], (getattr(item, "priority", 0), next(self._arrivals), item))
            self.unfinished_tasks += 1
            self._available.notify()

    def note_fetch(self, queue_name: str, found: bool) -> None:
        """A consumer's fetch came back: with messages, or empty (or its queue is paused)."""
        with self._lock:
            unblocks = self._strict and self._maybe_more.get(queue_name, True) and not found
            self._maybe_more[queue_name] = found
            # Only a strict pick waits on this flag, and only its change to False can let a waiting thread take a
            # lighter queue's task. Waking every idle thread on every fetch cost a fifth of a busy worker's CPU.
            if unblocks:
                self._available.notify_all()

    def take_all(self, queue_name: str) -> list[Any]:
        """Remove and return every buffered message of one queue (its queue was paused), in the order they would
        have run."""
        with self._lock:
            items = self._items.get(queue_name)
            if not items:
                return []
            taken = [entry[2].message for entry in sorted(items)]
            items.clear()
            self.unfinished_tasks -= len(taken)
            if self.unfinished_tasks == 0:
                self._all_done.notify_all()
            return taken

    # -- what worker threads call ----------------------------------------------------------------------------------
    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        with self._lock:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                item = self._pick()
                if item is not None:
                    return item
                if not block:
                    raise Empty
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise Empty
                self._available.wait(remaining)

    def get_nowait(self) -> Any:
        return self.get(block=False)

    def task_done(self) -> None:
        with self._lock:
            self.unfinished_tasks -= 1
            if self.unfinished_tasks <= 0:
                self.unfinished_tasks = 0
                self._all_done.notify_all()

    def join(self) -> None:
        with self._lock:
            while self.unfinished_tasks:
                self._all_done.wait()

    def buffered(self, queue_name: str) -> int:
        """Messages of one queue waiting in this process for a thread."""
        with self._lock:
            return len(self._items.get(queue_name, ()))

    def qsize(self) -> int:
        with self._lock:
            return sum(len(items) for items in self._items.values())

    def empty(self) -> bool:
        return self.qsize() == 0

    def _pick(self) -> Any:
        if self._strict:
            for name in self._order:
                if self._items[name]:
                    return heapq.heappop(self._items[name])[2]
                if self._maybe_more[name]:
                    return None  # a heavier queue may still have tasks in Redis: wait for it
            return None
        candidates = [name for name in self._order if self._items[name]]
        if not candidates:
            return None
        total = sum(self._weights[name] for name in candidates)
        draw = self._rng.random() * total
        for name in candidates:
            draw -= self._weights[name]
            if draw < 0:
                return heapq.heappop(self._items[name])[2]
        return heapq.heappop(self._items[candidates[-1]])[2]
