"""What a handler can ask about the task it runs (``jobkit.progress()``, ``jobkit.cancelled()``), and how a worker
cancels a task that is running.

Each worker thread that runs a jobkit message holds one :class:`Running` while the handler runs (set by the
``RunningTasks`` middleware). Cancelling it does what Dramatiq's time limit does: it raises an exception
(:class:`TaskCanceledInterrupt`, a :class:`dramatiq.threading.Interrupt`) inside the thread, which Python delivers at
the next bytecode. A thread blocked in C does not run bytecode, so ``time.sleep`` is the one blocking call made
interruptible here (:func:`interruptible_sleep`): inside a running task it waits on the task's wake-up event, and
everywhere else it is the stdlib's sleep, unchanged.
"""

from __future__ import annotations

import contextvars
import ctypes
import threading
import time
from typing import Any, SupportsIndex

from dramatiq.threading import Interrupt

__all__ = [
    "CANCELED_AT_OPTION",
    "CANCELED_OPTION",
    "PROGRESS_OPTION",
    "RESULT_OPTION",
    "RESULT_PROBLEM_OPTION",
    "Running",
    "TaskCanceledInterrupt",
    "cancelled",
    "current",
    "install_interruptible_sleep",
    "interruptible_sleep",
    "progress",
]

#: Message options about a task's end, written by the RunningTasks middleware (and, for ``canceled``, by the queues
#: script when it cancels a task that was not running).
RESULT_OPTION = "jobkit_result"
RESULT_PROBLEM_OPTION = "jobkit_result_problem"
PROGRESS_OPTION = "jobkit_progress"
CANCELED_OPTION = "jobkit_canceled_by"
CANCELED_AT_OPTION = "jobkit_canceled_at"

#: How often a worker writes the progress of its running tasks to Redis, in seconds.
PROGRESS_INTERVAL_S = 0.5

_stdlib_sleep = time.sleep

#: ``done`` before the handler reports anything.
_UNSET: Any = object()


def _now_ms() -> int:
    return int(time.time() * 1000)


class TaskCanceledInterrupt(Interrupt):
    """Raised inside a running handler when its task is canceled. A ``BaseException``, so ``except Exception`` in a
    handler does not swallow it; the task ends canceled, never retried."""

    def __init__(self, by: str = "") -> None:
        super().__init__(f"canceled by {by}" if by else "canceled")
        self.by = by


class Running:
    """One task running on one worker thread."""

    __slots__ = (
        "_flushed",
        "canceled_by",
        "done",
        "lock",
        "message_id",
        "note",
        "progress_written",
        "queue",
        "secrets",
        "sleeping",
        "thread_id",
        "total",
        "wake",
    )

    def __init__(self, message_id: str, queue: str) -> None:
        self.message_id = message_id
        self.queue = queue
        self.thread_id = threading.get_ident()
        # The clear values of the task's sensitive fields, set while its handler runs: never in a progress note.
        self.secrets: tuple[str, ...] = ()
        self.lock = threading.Lock()
        #: What a sleeping handler waits on; made by its first sleep (most tasks never sleep, and an Event costs a
        #: Condition), set by a cancel.
        self.wake: threading.Event | None = None
        self.canceled_by: str | None = None
        self.sleeping = False
        #: What the handler last reported (three plain stores in ``progress()``, no tuple to build per call), and what
        #: was last written to Redis.
        self.done: Any = _UNSET
        self.total: float | None = None
        self.note: str | None = None
        self._flushed: tuple[float, float | None, str | None] | None = None
        self.progress_written = False

    # -- cancellation ----------------------------------------------------------------------------------------------
    def cancel(self, by: str) -> None:
        """Called from another thread: the handler stops at its next bytecode, or at once if it sleeps."""
        with self.lock:
            if self.canceled_by is not None:
                return
            self.canceled_by = by
            if self.wake is not None:
                self.wake.set()
            if self.thread_id and not self.sleeping:
                _raise_in(self.thread_id, TaskCanceledInterrupt)

    def finish(self) -> None:
        """Called by the task's own thread when its handler is over: no interrupt may arrive after this."""
        with self.lock:
            _clear_pending(self.thread_id)
            self.thread_id = 0

    def _sleep(self, seconds: float) -> None:
        with self.lock:
            if self.canceled_by is not None:
                _clear_pending(self.thread_id)
                raise TaskCanceledInterrupt(self.canceled_by)
            self.sleeping = True
            if self.wake is None:
                self.wake = threading.Event()
            wake = self.wake
        try:
            wake.wait(seconds)
        finally:
            with self.lock:
                self.sleeping = False
                if self.canceled_by is not None:
                    _clear_pending(self.thread_id)
                    raise TaskCanceledInterrupt(self.canceled_by)

    # -- progress --------------------------------------------------------------------------------------------------
    @property
    def progress(self) -> dict[str, Any] | None:
        """The latest progress the handler reported (``done``, ``total``, ``percent``, ``note``, ``updated_at``)."""
        done, total, note = self.done, self.total, self.note
        if done is _UNSET:
            return None
        if note is not None and self.secrets:
            note = _scrub(str(note), self.secrets)
        percent = round(min(max(done / total, 0.0), 1.0) * 100, 1) if total else None
        return {"done": done, "total": total, "percent": percent, "note": note, "updated_at": _now_ms()}

    def unwritten_progress(self) -> dict[str, Any] | None:
        """The progress to write, if it changed since the last call (the worker's flusher calls this)."""
        latest = (self.done, self.total, self.note)
        if latest[0] is _UNSET or latest == self._flushed:
            return None
        self._flushed = latest
        self.progress_written = True
        return self.progress


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:  # the longest first (see jobkit.engine.sealing.scrub)
        text = text.replace(secret, "***")
    return text


#: What ``progress()`` writes to outside a task, and nobody reads: the hot path has no test for "no task".
_SINK = Running("", "")

#: The task this thread runs. A context variable rather than a ``threading.local``: its read is cached per thread in C
#: (about 18 ns less per ``progress()`` in a tight loop), and an asyncio actor's coroutine, which Dramatiq runs on its
#: event-loop thread with the worker thread's context, sees the same task. Outside a task (and on a thread that never
#: ran one) it is the sink.
_running: contextvars.ContextVar[Running] = contextvars.ContextVar("jobkit_running", default=_SINK)
#: Its ``get``, bound once: ``progress()`` calls it without looking the method up on every call (about 2 ns of its 18).
_current_running = _running.get


def current() -> Running | None:
    """The task this thread runs, or None outside a task."""
    running = _running.get()
    return None if running is _SINK else running


def enter(running: Running) -> None:
    _running.set(running)


def leave() -> Running | None:
    running = current()
    _running.set(_SINK)
    if running is not None:
        running.finish()
    return running


def progress(done: float, total: float | None = None, note: str | None = None) -> None:
    """Record how far the running task is: ``done`` of ``total`` (either in any unit), with an optional ``note``.
    Costs three attribute stores, so it can sit in a tight loop: the worker writes the latest value to Redis every
    half second (from its own thread), and keeps the last one with the task when it ends. Outside a task it does
    nothing (it writes to the sink)."""
    running = _current_running()
    running.done = done
    running.total = total
    running.note = note


def cancelled() -> bool:
    """True once the running task has been canceled: for a long loop that wants to stop cleanly by itself (the
    handler is interrupted anyway at its next bytecode)."""
    running = current()
    return running is not None and running.canceled_by is not None


def interruptible_sleep(seconds: float | SupportsIndex) -> None:
    """``time.sleep`` that a cancel wakes, inside a running task; the stdlib's everywhere else."""
    running = current()
    if running is None:
        _stdlib_sleep(seconds)
        return
    delay = float(seconds)
    if delay < 0:
        raise ValueError("sleep length must be non-negative")
    running._sleep(delay)


def install_interruptible_sleep() -> None:
    """Make ``time.sleep`` interruptible by a cancel (what a worker does as it boots). Code that imported ``sleep``
    by name before this keeps the stdlib's, which a cancel interrupts only when it returns."""
    time.sleep = interruptible_sleep


def _raise_in(thread_id: int, exception: type[BaseException]) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exception))


def _clear_pending(thread_id: int) -> None:
    if thread_id:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)
