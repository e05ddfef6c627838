"""Supervision for ``jobkit worker`` and ``jobkit up``: start each part as a child process, replace one that dies
(with back-off, logging how it ended), replace a group on request (a reload), and stop everything cleanly on the
first SIGTERM or Ctrl-C (a second one stops at once).

Each child runs in its own session: a Ctrl-C at the terminal reaches the supervisor alone, which then sends each
child exactly one SIGTERM (a second signal from the terminal would be a hard stop for Dramatiq). Linux also sends a
child SIGTERM when the supervisor itself dies (``PR_SET_PDEATHSIG``), so a crashed supervisor leaves no orphans.

A worker child is Dramatiq's own CLI with one worker process (``dramatiq jobkit.actors --processes 1``), so a dead
worker is replaced without touching the others; its unfinished tasks come back through the broker's orphan recovery
(README, Operations: "Dead workers"). When a child's main process is killed, its Dramatiq worker process can be left
behind: the supervisor asks it to stop (its running tasks finish) and waits for it when stopping; on Linux it is the
"subreaper" of its descendants, so such an orphan becomes its child and is reaped by it.

All of it runs in the main thread (a reloader thread only posts requests), which matters for ``PR_SET_PDEATHSIG``:
Linux ties it to the thread that started the child.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobkit.errors import JobkitError

__all__ = ["Part", "Supervisor", "dramatiq_exit_cause", "exit_cause", "spawn"]

log = logging.getLogger("jobkit.supervisor")

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
#: Dramatiq's CLI exit codes (dramatiq.cli.RET_*), said in words.
_DRAMATIQ_EXITS = {
    1: "its Dramatiq worker process died or was killed (Dramatiq's line above says how)",
    2: "an import failed or a flag is wrong",
    3: "it could not connect to Redis",
    4: "its PID file is in use",
}


def _die_with_parent() -> None:  # between fork and exec: nothing but one libc call
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(argv: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """A child in its own session that gets SIGTERM if the supervisor dies."""
    return subprocess.Popen(list(argv), env=dict(env), start_new_session=True, preexec_fn=_die_with_parent)


def exit_cause(returncode: int) -> str:
    """How a child ended, in words: ``killed by SIGKILL``, ``exited with code 3``."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def dramatiq_exit_cause(returncode: int) -> str:
    """:func:`exit_cause` for a Dramatiq CLI child, with the meaning of its exit codes."""
    meaning = _DRAMATIQ_EXITS.get(returncode)
    return f"{exit_cause(returncode)}: {meaning}" if meaning else exit_cause(returncode)


#: How a group reads in a sentence, in the order parts start.
_GROUP_NAMES = {"redis": "Redis", "workers": "the workers", "scheduler": "the scheduler", "api": "the API"}


def _names(groups: Collection[str]) -> str:
    """``the workers, the scheduler and the API``."""
    names = [name for group, name in _GROUP_NAMES.items() if group in groups]
    names += sorted(group for group in groups if group not in _GROUP_NAMES)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


@dataclass(eq=False)
class Part:
    """One supervised child: a worker, the scheduler, the API, the embedded Redis."""

    name: str
    group: str
    """What a reload replaces together: ``workers``, ``scheduler``, ``api``, ``redis``."""
    start: Callable[[], subprocess.Popen[bytes]]
    cause: Callable[[int], str] = exit_cause
    overlap: bool = False
    """On a reload, start the new child at once, while the old one finishes (workers); else once it has exited."""
    last: bool = False
    """Stopped only once every other part has exited (the embedded Redis the others need until then)."""
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_deaths: int = 0
    restart_at: float | None = None
    waits_for: list[subprocess.Popen[bytes]] = field(default_factory=list)
    """Old children of this part that must exit before it starts again (a reload without overlap)."""


class Supervisor:
    """Keeps ``parts`` running until a signal, then stops them; :meth:`run` returns the exit code."""

    CLEAN = frozenset({0, -signal.SIGTERM})  # uvicorn re-raises the SIGTERM it handled: a clean end too

    def __init__(
        self,
        parts: Sequence[Part] = (),
        *,
        backoff: tuple[float, float] = (0.5, 30.0),
        stable_after: float = 30.0,
        tick: float = 0.1,
    ) -> None:
        self.parts: list[Part] = list(parts)
        self.backoff = backoff
        self.stable_after = stable_after
        self.tick = tick
        self.retiring: list[tuple[Part, subprocess.Popen[bytes]]] = []
        self.orphans: set[int] = set()  # process groups left behind by a child that died
        self.requests: queue.SimpleQueue[tuple[frozenset[str], str]] = queue.SimpleQueue()
        self.reloading: list[tuple[frozenset[str], str]] = []
        self.signals = 0
        self.stopping = False
        self.unclean: list[str] = []

    def adopt_orphans(self) -> None:
        """Become the parent of orphaned descendants (Linux), so that one left behind is reaped here."""
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1)

    # -- starting ----------------------------------------------------------------------------------------------------
    def add(self, part: Part, *, required: bool = False) -> Part:
        """Add ``part`` and start it now (so a caller can tell the user about it between starts). When it cannot
        start, a ``required`` part raises; any other is tried again later."""
        self.parts.append(part)
        self._start(part, required=required)
        return part

    def _start(self, part: Part, *, required: bool = False) -> None:
        part.restart_at = None
        try:
            part.process = part.start()
        except (JobkitError, OSError) as exc:
            if required:
                raise
            log.error("%s could not start: %s", part.name, exc)
            self._schedule_restart(part, 0.0)
            return
        part.started_at = time.monotonic()

    def _schedule_restart(self, part: Part, uptime: float) -> float:
        if uptime >= self.stable_after:
            part.quick_deaths = 0
        part.quick_deaths += 1
        low, high = self.backoff
        delay = min(high, low * 2.0 ** (part.quick_deaths - 1))
        part.restart_at = time.monotonic() + delay
        return delay

    # -- requests from other threads and from signals ----------------------------------------------------------------
    def request_replace(self, groups: Collection[str], reason: str) -> None:
        """Replace the parts of ``groups`` gracefully (thread-safe: done by the supervising loop)."""
        self.requests.put((frozenset(groups), reason))

    def handle_signals(self) -> None:
        """SIGINT and SIGTERM stop everything (the first one gracefully)."""

        def on_signal(signum: int, frame: Any) -> None:
            self.signals += 1

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    # -- the loop ----------------------------------------------------------------------------------------------------
    def run(self) -> int:
        """Supervise until a signal, then stop everything; 0 when every part stopped cleanly."""
        hard = False
        while True:
            if self.signals and not self.stopping:
                log.info("stopping (waiting for running tasks; press Ctrl-C again to stop at once)")
                self.stopping = True
                self._signal_all(last=False)
            if self.signals >= 2 and not hard:
                hard = True
                log.info("stopping at once (unfinished tasks go back to their queues)")
                self._signal_all(last=False)
            self.step()
            if self.stopping and self._all_stopped(last=False):
                break
            time.sleep(self.tick)
        self._signal_all(last=True)
        for part in self.parts:
            if part.last and part.process is not None:
                self._wait(part)
        for name in self.unclean:
            log.error("%s", name)
        return 1 if self.unclean else 0

    def step(self) -> None:
        """One round: notice children that ended, restart what is due, carry out replace requests."""
        now = time.monotonic()
        for part in self.parts:
            process = part.process
            if process is not None and process.poll() is not None:
                self._ended(part, process)
            part.waits_for = [old for old in part.waits_for if old.poll() is None]
            due = part.restart_at is not None and now >= part.restart_at
            if part.process is None and not part.waits_for and due and not self.stopping:
                self._start(part)
                if part.process is not None:
                    log.info("%s restarted (pid %d)", part.name, part.process.pid)
        for part, old in list(self.retiring):
            if old.poll() is not None:
                self.retiring.remove((part, old))
                self._leftovers(old)
                if old.returncode not in self.CLEAN:
                    log.warning("%s (pid %d, replaced) %s", part.name, old.pid, part.cause(old.returncode))
        self.orphans = {group for group in self.orphans if self._group_alive(group)}
        while not self.stopping:
            try:
                groups, reason = self.requests.get_nowait()
            except queue.Empty:
                break
            self._replace(groups, reason)
        for groups, reason in list(self.reloading):
            busy = any(part.group in groups for part, _ in self.retiring)
            waiting = any(part.waits_for or part.process is None for part in self.parts if part.group in groups)
            if not busy and not waiting:
                self.reloading.remove((groups, reason))
                log.info(
                    "reloaded: %s %s the new version",
                    _names(groups),
                    "run" if len(groups) > 1 or "workers" in groups else "runs",
                )

    def _ended(self, part: Part, process: subprocess.Popen[bytes]) -> None:
        part.process = None
        self._leftovers(process)
        uptime = time.monotonic() - part.started_at
        if self.stopping:
            if process.returncode not in self.CLEAN:
                self.unclean.append(f"{part.name} (pid {process.pid}) {part.cause(process.returncode)}")
            return
        delay = self._schedule_restart(part, uptime)
        log.warning(
            "%s (pid %d) %s after %s; restarting in %s",
            part.name, process.pid, part.cause(process.returncode), _duration(uptime), _duration(delay),
        )  # fmt: skip

    def _replace(self, groups: frozenset[str], reason: str) -> None:
        finish = " (running tasks finish first)" if "workers" in groups else ""
        log.info("%s: restarting %s%s", reason, _names(groups), finish)
        for part in self.parts:
            if part.group not in groups:
                continue
            old = part.process
            if old is None:
                continue  # it is waiting for a restart, which will start the new version
            part.process = None
            old.send_signal(signal.SIGTERM)
            self.retiring.append((part, old))
            if part.overlap:
                self._start(part)
                if part.process is not None:
                    log.info("%s restarted (pid %d)", part.name, part.process.pid)
            else:
                part.waits_for.append(old)
                part.restart_at = time.monotonic()
        self.reloading.append((groups, reason))

    # -- stopping ----------------------------------------------------------------------------------------------------
    def _signal_all(self, *, last: bool) -> None:
        for part in self.parts:
            if part.last == last and part.process is not None and part.process.poll() is None:
                part.process.send_signal(signal.SIGTERM)
            if part.last == last:
                part.restart_at = None
        if not last:
            for _, old in self.retiring:
                if old.poll() is None:
                    old.send_signal(signal.SIGTERM)
            for group in self.orphans:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGTERM)

    def _all_stopped(self, *, last: bool) -> bool:
        parts = all(part.process is None for part in self.parts if part.last == last)
        return parts and not self.retiring and not self.orphans

    def _wait(self, part: Part) -> None:
        assert part.process is not None
        process = part.process
        process.wait()
        part.process = None
        if process.returncode not in self.CLEAN:
            self.unclean.append(f"{part.name} (pid {process.pid}) {part.cause(process.returncode)}")

    def _leftovers(self, process: subprocess.Popen[bytes]) -> None:
        """Ask what the child left in its process group (a Dramatiq worker process whose main process was killed)
        to stop, and remember the group until it is gone."""
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            return
        self.orphans.add(process.pid)
        log.warning("process group %d outlived its main process; asked it to stop (running tasks finish)", process.pid)

    @staticmethod
    def _group_alive(group: int) -> bool:
        """Whether a process of ``group`` still runs (a zombie does not; one that is our child is reaped)."""
        if not os.path.isdir("/proc/self"):
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return False
            return True
        alive = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as stat:
                    fields = stat.read().rpartition(")")[2].split()
            except OSError:
                continue  # it ended while we looked
            state, parent, pgrp = fields[0], int(fields[1]), int(fields[2])
            if pgrp != group:
                continue
            if state != "Z":
                alive = True
            elif parent == os.getpid():
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(int(entry), os.WNOHANG)
        return alive
