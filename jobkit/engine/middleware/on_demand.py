"""Dramatiq's Results and AsyncIO middleware, installed when the first actor that needs them is declared.

Dramatiq leaves both to the application; jobkit used to install both in every worker, which made every worker pay
for a results lookup per message and an event loop thread it never used, and made a process running two workers
hang at exit (AsyncIO keeps one global loop thread: the second worker's replaces the first's, which is then never
stopped). Now a broker gets

- ``Results`` once an actor is declared with ``store_results=True`` (its options are accepted from the start, so
  ``@dramatiq.actor(store_results=True)`` works as with Dramatiq), and
- :class:`SharedAsyncIO` once an actor's function is ``async def`` (a jobs.yaml handler or a plain actor).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.asyncio import EventLoopThread, get_event_loop_thread, set_event_loop_thread
from dramatiq.middleware import AsyncIO, Middleware
from dramatiq.results import Results

__all__ = ["OnDemand", "SharedAsyncIO", "is_async"]


def is_async(actor: dramatiq.Actor[..., Any]) -> bool:
    """Whether the actor runs a coroutine function (Dramatiq wraps it with ``async_to_sync``)."""
    return inspect.iscoroutinefunction(getattr(actor.fn, "__wrapped__", None))


class SharedAsyncIO(AsyncIO):
    """Dramatiq's AsyncIO with one event loop thread per process however many workers run in it: the first worker
    to boot starts it, the last one to stop stops it. The thread is a daemon, so a worker stopped hard (Dramatiq's
    second SIGTERM) exits instead of waiting for a loop nobody stops."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._workers = 0

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        with self._lock:
            self._workers += 1
            if self._workers == 1:
                thread = EventLoopThread(self.logger)
                thread.daemon = True
                thread.start(timeout=1.0)
                set_event_loop_thread(thread)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        with self._lock:
            self._workers -= 1
            if self._workers == 0:
                thread = get_event_loop_thread()
                if thread is not None:
                    thread.stop()  # type: ignore[no-untyped-call]
                    thread.join()
                set_event_loop_thread(None)


class OnDemand(Middleware):
    """Adds ``Results`` (from ``results()``) and :class:`SharedAsyncIO` to the broker when an actor that needs them
    is declared. A worker already running gets the event loop at once."""

    def __init__(self, results: Callable[[], Results]) -> None:
        self.results = results
        self.workers: list[Any] = []  # workers booted and not stopped, in this process

    @property
    def actor_options(self) -> set[str]:
        return {"store_results", "result_ttl"}  # Results', so actors may be declared with them before it is added

    def after_declare_actor(self, broker: dramatiq.Broker, actor: dramatiq.Actor[..., Any]) -> None:
        installed = {type(m) for m in broker.middleware}
        if actor.options.get("store_results") and Results not in installed:
            broker.add_middleware(self.results())
        if is_async(actor) and not any(issubclass(kind, AsyncIO) for kind in installed):
            event_loop = SharedAsyncIO()
            broker.add_middleware(event_loop)
            for worker in self.workers:
                event_loop.before_worker_boot(broker, worker)

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.workers.append(worker)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if worker in self.workers:
            self.workers.remove(worker)
