"""Live updates for the dashboard and scripts: one stats sampler per process, shared by every subscriber.

While anyone listens, the sampler reads every queue's stats (one pipelined round trip, well under a millisecond)
every :data:`SAMPLE_INTERVAL`, compares them with the previous sample and hands each subscriber:

- ``stats``: every queue's figures (the answer of ``GET /api/jobs/stats``), when a count changed, and at least
  every :data:`STATS_EVERY` (latency grows while tasks wait, without any count changing);
- ``changes``: per queue, how each count moved since the previous sample (``{"queue": "default", "pending": 3,
  "active": -1, "processed": 4, "failed": 1}``), only the counts that moved: tasks entering and leaving each state;
- ``archived``: the tasks newly archived since the previous sample (at most :data:`ARCHIVED_MAX` per queue per
  sample), each as a task object with its payload redacted: the state change an operator acts on;
- ``unavailable`` when Redis did not answer a sample (the next one that answers sends ``stats`` again).

A stream that has nothing to say for :data:`KEEPALIVE` sends a keepalive (the route writes it), so proxies and
clients know it is alive.

Open streams are capped: at most :data:`MAX_STREAMS_PER_TOKEN` per token and :data:`MAX_STREAMS` per process (each
holds a connection, so a file descriptor, for as long as it lasts); one more is refused with :class:`TooBusy` (the
route answers 429) rather than let one token exhaust the process's descriptors.

The cost does not grow with the number of subscribers: one sample feeds them all, each subscriber holds a few
queued events, and a subscriber that falls behind loses its oldest events rather than growing a backlog. The source
is the stats themselves (counts and the archived set's times), so nothing on the hot path of a task publishes
anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from redis.exceptions import RedisError

from jobkit.errors import TooBusy
from jobkit.services.queues import Queues, QueueStats

__all__ = [
    "ARCHIVED_MAX",
    "KEEPALIVE",
    "MAX_STREAMS",
    "MAX_STREAMS_PER_TOKEN",
    "SAMPLE_INTERVAL",
    "STATS_EVERY",
    "Event",
    "Events",
    "Subscription",
]

log = logging.getLogger("jobkit.events")

#: How often the shared sampler reads the stats while anyone listens (seconds).
SAMPLE_INTERVAL = 0.5
#: A ``stats`` event goes out at least this often, changed or not (seconds).
STATS_EVERY = 5.0
#: A ``keepalive`` goes out after this much silence (seconds).
KEEPALIVE = 15.0
#: Newly archived tasks reported per queue per sample, at most.
ARCHIVED_MAX = 20
#: Streams one process keeps open at once, and one token (the dashboard opens one per browser tab; a browser opens
#: at most 6 connections to a server over HTTP/1.1, so more tabs than this could not load their pages anyway).
MAX_STREAMS = 200
MAX_STREAMS_PER_TOKEN = 4
#: Events a subscriber may have waiting; beyond it, its oldest are dropped.
_BACKLOG = 16
#: The counts a ``changes`` event reports, by the name it reports them under.
_COUNTS = {
    "pending": "pending",
    "active": "active",
    "scheduled": "scheduled",
    "retry": "retry",
    "archived": "archived",
    "completed": "completed",
    "processed": "processed_total",
    "failed": "failed_total",
}


class Subscription:
    """One reader's place in the stream: :meth:`next` waits for its next event."""

    def __init__(self, events: Events, inbox: asyncio.Queue[Event | None], owner: str) -> None:
        self._events = events
        self._inbox = inbox
        self._owner = owner
        self._closed = False
        self.ended = False
        """True once the server ended the stream (:meth:`Events.disconnect_all`)."""

    async def next(self, timeout: float) -> Event | None:
        """The next event, or None when none came within ``timeout`` seconds or the stream ended (see ``ended``)."""
        if self.ended:
            return None
        try:
            event = await asyncio.wait_for(self._inbox.get(), timeout)
        except TimeoutError:
            return None
        if event is None:
            self.ended = True
        return event

    def close(self) -> None:
        """Give the stream's place back (once; later calls do nothing)."""
        if not self._closed:
            self._closed = True
            self._events._leave(self._inbox, self._owner)

    def __del__(self) -> None:
        # A stream whose response never started (the client left first) is never iterated, so never closed: its
        # place comes back when it is collected rather than never.
        self.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Event:
    kind: str
    """``stats``, ``changes``, ``archived`` or ``unavailable`` (Redis did not answer a sample)."""
    data: dict[str, Any]


def _now_iso() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds")


class Events:
    """The shared sampler and its subscribers (one per API process; see the module docstring)."""

    def __init__(
        self,
        queues: Queues,
        interval: float = SAMPLE_INTERVAL,
        *,
        max_streams: int = MAX_STREAMS,
        max_per_token: int = MAX_STREAMS_PER_TOKEN,
    ) -> None:
        self.queues = queues
        self.interval = interval
        self.max_streams = max_streams
        self.max_per_token = max_per_token
        self._subscribers: set[asyncio.Queue[Event | None]] = set()
        self._open: dict[str, int] = {}  # open subscriptions per owner (a token's id)
        self._open_total = 0
        self._sampler: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._latest: Event | None = None
        self.samples = 0
        """Stats samples taken since the process started."""

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def open_for(self, owner: str) -> int:
        """Subscriptions of ``owner`` not closed yet."""
        return self._open.get(owner, 0)

    def subscribe(self, owner: str = "") -> Subscription:
        """A subscription for ``owner`` (the token's id): the latest ``stats`` first (when there is one), then every
        event until it is closed or :meth:`disconnect_all` ends it. Call it on the event loop that reads it.
        :class:`TooBusy` when the owner has :attr:`max_per_token` open already, or the process :attr:`max_streams`."""
        loop = asyncio.get_running_loop()
        if self._open.get(owner, 0) >= self.max_per_token:
            raise TooBusy(
                f"events: this token has {self.max_per_token} streams open already, the most one token may have; "
                "close one (a browser tab) or use another token"
            )
        if self._open_total >= self.max_streams:
            raise TooBusy(
                f"events: this API process has {self.max_streams} streams open, the most it keeps; try again "
                "shortly (the dashboard polls meanwhile)"
            )
        self._open[owner] = self._open.get(owner, 0) + 1
        self._open_total += 1
        self._loop = loop
        inbox: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=_BACKLOG)
        if self._latest is not None:
            inbox.put_nowait(self._latest)
        self._subscribers.add(inbox)
        if self._sampler is None or self._sampler.done():
            self._sampler = asyncio.create_task(self._sample(), name="jobkit events sampler")
        return Subscription(self, inbox, owner)

    def _leave(self, inbox: asyncio.Queue[Event | None], owner: str) -> None:
        self._subscribers.discard(inbox)
        self._open_total -= 1
        left = self._open.get(owner, 0) - 1
        if left > 0:
            self._open[owner] = left
        else:
            self._open.pop(owner, None)

    def disconnect_all(self) -> None:
        """End every open stream now (a server shutting down; clients reconnect, to this process or another). Safe
        to call from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop stopped in between: its streams are gone already
            loop.call_soon_threadsafe(self._end_all)

    def _end_all(self) -> None:
        for inbox in list(self._subscribers):
            self._offer(inbox, None)
        self._subscribers.clear()

    def _publish(self, event: Event) -> None:
        for inbox in list(self._subscribers):
            self._offer(inbox, event)

    @staticmethod
    def _offer(inbox: asyncio.Queue[Event | None], event: Event | None) -> None:
        while True:
            try:
                inbox.put_nowait(event)
                return
            except asyncio.QueueFull:  # a slow reader loses its oldest events, not the newest
                with contextlib.suppress(asyncio.QueueEmpty):
                    inbox.get_nowait()

    async def _sample(self) -> None:
        previous: list[QueueStats] | None = None
        last_stats_at = 0.0
        while self._subscribers:
            started = time.monotonic()
            try:
                current = await asyncio.to_thread(self.queues.all_stats)
                archived = await asyncio.to_thread(self._newly_archived, previous, current)
            except (RedisError, OSError) as exc:
                log.warning("events: Redis did not answer a stats sample: %s", type(exc).__name__)
                self._publish(Event("unavailable", {"at": _now_iso(), "detail": "Redis is unreachable"}))
                previous = None
            except Exception:  # a bug must not end every stream's updates for good: say so, sample again
                log.exception("events: a stats sample failed")
                previous = None
            else:
                self.samples += 1
                moved = _changes(previous, current) if previous is not None else []
                if previous is None or moved or started - last_stats_at >= STATS_EVERY:
                    self._latest = Event("stats", {"at": _now_iso(), "queues": [s.to_dict() for s in current]})
                    self._publish(self._latest)
                    last_stats_at = started
                if moved:
                    self._publish(Event("changes", {"at": _now_iso(), "queues": moved}))
                if archived:
                    self._publish(Event("archived", {"at": _now_iso(), "tasks": archived}))
                previous = current
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        self._latest = None  # nobody listens: the next subscriber starts from a fresh sample

    def _newly_archived(self, previous: list[QueueStats] | None, current: list[QueueStats]) -> list[dict[str, Any]]:
        """The tasks archived since ``previous`` was sampled, in the queues whose archived count grew."""
        if previous is None:
            return []
        before = {stats.queue: stats for stats in previous}
        grown = [s.queue for s in current if s.queue in before and s.archived > before[s.queue].archived]
        found: list[dict[str, Any]] = []
        for name in grown:
            count = min(ARCHIVED_MAX, next(s.archived for s in current if s.queue == name) - before[name].archived)
            _, infos = self.queues.tasks(name, "archived", 1, count)  # newest first
            found.extend(info.to_dict() for info in infos)
        return found


def _changes(previous: list[QueueStats], current: list[QueueStats]) -> list[dict[str, Any]]:
    """Per queue, the counts that moved between two samples (and ``paused`` when it flipped)."""
    before = {stats.queue: stats for stats in previous}
    moved = []
    for stats in current:
        old = before.get(stats.queue)
        if old is None:
            continue
        delta: dict[str, Any] = {}
        for name, attribute in _COUNTS.items():
            change = cast(int, getattr(stats, attribute)) - cast(int, getattr(old, attribute))
            if change:
                delta[name] = change
        if stats.paused != old.paused:
            delta["paused"] = stats.paused
        if delta:
            moved.append({"queue": stats.queue, **delta})
    return moved
