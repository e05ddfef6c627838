"""``jobkit scheduler``: any number of identical processes fire each entry's nominal times exactly once.

Every process reads the same definitions from Redis and computes the same nominal fire times (whole epoch
milliseconds). For each one it calls ``JobkitBroker.enqueue_once`` with the claim key
``<ns>:schedules:fired:<id>:<nominal_ms>``: the claim and the enqueue are one Lua call, so whichever process gets
there first enqueues and the others find the claim. No leader, no lock to hand over: when a process dies the others
simply keep claiming, so there is no fail-over gap.

Missed fires (every scheduler down, or this one stalled) within ``grace`` are coalesced into one enqueue of the
latest; older ones are skipped and logged. Changes made through the API reach running schedulers through a version
counter each one polls every ``poll_interval``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dramatiq.message import Message
from redis.exceptions import RedisError

from .client import Client, check_payload, get_client
from .cron import CronError, EveryTrigger, OnceTrigger, Trigger, load_timezone, parse_spec
from .durations import DurationError, format_duration, parse_duration
from .errors import DispatchError, UnknownQueue
from .model import ScheduleSpec
from .schedule_store import CODE_SOURCES, ScheduleStore, StoredSchedule
from .yamlnodes import did_you_mean

__all__ = [
    "ScheduleError",
    "ScheduleInfo",
    "Scheduler",
    "Schedules",
    "list_schedules",
    "schedule_once",
    "schedule_recurring",
    "trigger_for",
    "unschedule",
]

log = logging.getLogger("jobkit.scheduler")

DEFAULT_GRACE = timedelta(seconds=60)
#: How often a scheduler looks for added or removed entries; it also never sleeps longer than this.
POLL_INTERVAL_S = 0.25
#: A claim only needs to outlive the grace period (older fire times are never enqueued), plus room for clock skew
#: between hosts; an hour keeps Redis small even for `@every 1s` entries.
CLAIM_MARGIN = timedelta(hours=1)


class ScheduleError(DispatchError):
    """The schedule cannot be created as asked."""


def trigger_for(spec: ScheduleSpec) -> Trigger:
    return parse_spec(spec.spec, load_timezone(spec.timezone), allow_at=True)


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


# -- the run loop ----------------------------------------------------------------------------------------------------
@dataclass
class _Live:
    stored: StoredSchedule
    definition: str
    trigger: Trigger
    next_ms: int | None


@dataclass
class Scheduler:
    """One scheduler process's loop; ``run`` until ``stop`` is set, or drive ``tick`` from a test with a fake clock."""

    client: Client
    grace: timedelta = DEFAULT_GRACE
    poll_interval: float = POLL_INTERVAL_S
    clock: Callable[[], float] = time.time
    store: ScheduleStore = field(init=False)
    entries: dict[str, _Live] = field(init=False, default_factory=dict)
    enqueued: int = field(init=False, default=0)
    _version: int = field(init=False, default=-1)

    def __post_init__(self) -> None:
        self.store = ScheduleStore(self.client.broker.client, self.client.settings.namespace)
        self.grace_ms = int(self.grace.total_seconds() * 1000)
        self.claim_ttl_ms = self.grace_ms + int(CLAIM_MARGIN.total_seconds() * 1000)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                wait = self.tick()
            except RedisError as exc:  # Redis away: keep the cursors, retry; nothing due is lost within the grace
                log.warning("scheduler: Redis error (%s); retrying in 1s", exc)
                wait = 1.0
            stop.wait(wait)

    def tick(self) -> float:
        """Pick up changes, enqueue what is due; returns how long to sleep (seconds)."""
        self.refresh()
        now_ms = self.now_ms()
        for live in list(self.entries.values()):
            if live.next_ms is not None and live.next_ms <= now_ms:
                self._fire_due(live, now_ms)
        upcoming = [live.next_ms for live in self.entries.values() if live.next_ms is not None]
        wait = self.poll_interval
        if upcoming:
            wait = min(wait, max(0.0, (min(upcoming) - self.now_ms()) / 1000))
        return wait

    def refresh(self) -> None:
        version = self.store.version()  # read before the definitions: a change in between shows up next tick
        if version == self._version:
            return
        stored, last = self.store.all(), self.store.last_fired()
        entries: dict[str, _Live] = {}
        for entry_id, item in stored.items():
            definition = item.definition()
            known = self.entries.get(entry_id)
            if known is not None and known.definition == definition:
                entries[entry_id] = known  # unchanged: keep its cursor, so nothing re-fires
                continue
            try:
                trigger = trigger_for(item.spec)
            except CronError as exc:
                log.error("schedule %s: %s (%s); ignored", entry_id, exc.message, exc.hint)
                continue
            cursor = max(last.get(entry_id, item.created_ms), item.created_ms)
            next_ms = trigger.next_after(cursor)
            if next_ms is None and isinstance(trigger, OnceTrigger):
                self.store.remove(entry_id)  # fired already; the process that fired it died before removing it
                continue
            entries[entry_id] = _Live(item, definition, trigger, next_ms)
        self.entries = entries
        self._version = version

    def _fire_due(self, live: _Live, now_ms: int) -> None:
        assert live.next_ms is not None
        spec, trigger = live.stored.spec, live.trigger
        first: int | None = live.next_ms
        oldest_kept = now_ms - self.grace_ms
        if first is not None and first < oldest_kept:
            skipped_from = first
            first = trigger.next_after(oldest_kept - 1)
            log.warning(
                "schedule %s: skipped fire times from %s, older than the %s grace period",
                spec.id,
                iso_ms(skipped_from),
                format_duration(self.grace),
            )
            if first is None or first > now_ms:
                live.next_ms = first
                self._drop_if_done(live)
                return
        assert first is not None
        latest, missed = first, 0
        while (following := trigger.next_after(latest)) is not None and following <= now_ms:
            latest, missed = following, missed + 1
        if missed:
            log.warning("schedule %s: %d missed fire time(s) coalesced into %s", spec.id, missed, iso_ms(latest))
        self._enqueue(spec, latest)
        live.next_ms = trigger.next_after(latest)
        self._drop_if_done(live)

    def _drop_if_done(self, live: _Live) -> None:
        if live.next_ms is None:
            self.entries.pop(live.stored.spec.id, None)
            if isinstance(live.trigger, OnceTrigger):
                self.store.remove(live.stored.spec.id)

    def _enqueue(self, spec: ScheduleSpec, nominal_ms: int) -> None:
        task = self.client.project.tasks.get(spec.task)
        if task is None:
            log.error("schedule %s: task %r is not declared in this scheduler's jobs.yaml; skipped", spec.id, spec.task)
            return
        message: Message[Any] = Message(
            queue_name=spec.queue or task.queue,
            actor_name=spec.task,
            args=(),
            kwargs=dict(spec.payload),
            options={"scheduled_at": iso_ms(nominal_ms), "schedule_id": spec.id},
        )
        claim = self.store.claim_key(spec.id, nominal_ms)
        enqueued = self.client.broker.enqueue_once(message, claim, self.claim_ttl_ms)
        if enqueued is not None:
            self.store.mark_fired(spec.id, nominal_ms)
            self.enqueued += 1
            log.info("schedule %s: %s %s enqueued for %s", spec.id, spec.task, enqueued.message_id, iso_ms(nominal_ms))


# -- dynamic schedules -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScheduleInfo:
    """One entry as listed by ``jobkit schedules``, ``jobkit.list_schedules()`` and the API."""

    id: str
    task: str
    spec: str
    payload: Mapping[str, Any]
    queue: str | None
    timezone: str
    source: str
    next_run_at: datetime | None
    last_run_at: datetime | None = None
    """The nominal time of its latest fire (None before the first)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "spec": self.spec,
            "payload": dict(self.payload),
            "queue": self.queue,
            "timezone": self.timezone,
            "source": self.source,
            "next_run_at": self.next_run_at.isoformat() if self.next_run_at else None,
            "last_run_at": self.last_run_at.isoformat() if self.last_run_at else None,
        }


class Schedules:
    """Create, remove and list entries at run time; running schedulers pick changes up within a second."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.store = ScheduleStore(client.broker.client, client.settings.namespace)

    def once(self, task: str, payload: Mapping[str, Any] | None, at: datetime, *, queue: str | None = None) -> str:
        """Enqueue ``task`` once at ``at`` (a time in the past fires at once); returns the entry id."""
        if not isinstance(at, datetime):
            raise ScheduleError(f"{task}: at must be a datetime, found {type(at).__name__}")
        now_ms = int(time.time() * 1000)
        at_ms = max(round(at.timestamp() * 1000), now_ms + 1)  # a naive `at` is local time, as in dispatch
        spec = f"@at {iso_ms(at_ms)}"
        return self._add(task, payload, spec, queue, "UTC", created_ms=now_ms)

    def recurring(
        self,
        task: str,
        payload: Mapping[str, Any] | None = None,
        *,
        every: timedelta | str | float | None = None,
        cron: str | None = None,
        queue: str | None = None,
        timezone: str = "UTC",
    ) -> str:
        """Enqueue ``task`` at every ``every`` (anchored to the epoch) or on ``cron``; returns the entry id."""
        if (every is None) == (cron is None):
            raise ScheduleError(f"{task}: give every= or cron=, exactly one")
        if every is not None:
            try:
                interval = every if isinstance(every, timedelta) else parse_duration(every)
            except DurationError as exc:
                raise ScheduleError(f"{task}: every: {exc}") from None
            spec = f"@every {format_duration(interval)}"
        else:
            assert cron is not None
            spec = cron.strip()
        return self._add(task, payload, spec, queue, timezone, created_ms=None)

    def remove(self, entry_id: str) -> bool:
        """Remove an entry created at run time; False if there is no such entry."""
        stored = self.store.get(entry_id)
        if stored is None:
            return False
        if stored.spec.source.startswith(CODE_SOURCES):
            where = "schedules.yaml" if stored.spec.source.startswith("yaml:") else "the periodiq actor's code"
            raise ScheduleError(f"schedule {entry_id!r} is declared in {where}; remove it there")
        return self.store.remove(entry_id)

    def list(self) -> list[ScheduleInfo]:
        """Every entry with its next run time, soonest first."""
        now_ms = int(time.time() * 1000)
        last = self.store.last_fired()
        infos = []
        for entry_id, stored in self.store.all().items():
            spec = stored.spec
            try:
                trigger = trigger_for(spec)
            except CronError:
                next_ms = None
            else:
                cursor = max(last.get(entry_id, stored.created_ms), stored.created_ms)
                next_ms = trigger.next_after(max(cursor, now_ms if not isinstance(trigger, OnceTrigger) else cursor))
            next_at = datetime.fromtimestamp(next_ms / 1000, UTC) if next_ms is not None else None
            fired = last.get(entry_id)
            last_at = datetime.fromtimestamp(fired / 1000, UTC) if fired is not None else None
            infos.append(
                ScheduleInfo(
                    spec.id,
                    spec.task,
                    spec.spec,
                    spec.payload,
                    spec.queue,
                    spec.timezone,
                    spec.source,
                    next_at,
                    last_at,
                )
            )
        far = datetime.max.replace(tzinfo=UTC)
        return sorted(infos, key=lambda info: (info.next_run_at or far, info.id))

    def _add(
        self,
        task: str,
        payload: Mapping[str, Any] | None,
        spec_text: str,
        queue: str | None,
        timezone: str,
        created_ms: int | None,
    ) -> str:
        task_spec = self.client.task_spec(task)
        if queue is not None and queue not in self.client.project.queues:
            hint = did_you_mean(queue, set(self.client.project.queues)) or "declared: " + ", ".join(
                self.client.project.queues
            )
            raise UnknownQueue(f"{task}: unknown queue {queue!r} ({hint})")
        payload = dict(payload or {})
        check_payload(task_spec, self.client.signature(task_spec), payload)
        try:
            trigger = parse_spec(spec_text, load_timezone(timezone), allow_at=spec_text.startswith("@at "))
        except CronError as exc:
            hint = f" ({exc.hint})" if exc.hint else ""
            raise ScheduleError(f"{task}: {spec_text!r}: {exc.message}{hint}") from None
        if isinstance(trigger, EveryTrigger) and spec_text.startswith("@every"):
            spec_text = f"@every {format_duration(timedelta(milliseconds=trigger.interval_ms))}"
        entry_id = f"api-{uuid.uuid4().hex[:16]}"
        spec = ScheduleSpec(entry_id, task, spec_text, payload, queue, timezone, "api")
        self.store.add(spec, created_ms)
        return entry_id


def schedule_once(task: str, payload: Mapping[str, Any] | None, at: datetime, *, queue: str | None = None) -> str:
    """Enqueue ``task`` with ``payload`` once at ``at``; returns the entry id (for :func:`unschedule`)."""
    return Schedules(get_client()).once(task, payload, at, queue=queue)


def schedule_recurring(
    task: str,
    payload: Mapping[str, Any] | None = None,
    *,
    every: timedelta | str | float | None = None,
    cron: str | None = None,
    queue: str | None = None,
    timezone: str = "UTC",
) -> str:
    """Enqueue ``task`` every ``every`` or on ``cron`` (read in ``timezone``); returns the entry id."""
    return Schedules(get_client()).recurring(task, payload, every=every, cron=cron, queue=queue, timezone=timezone)


def unschedule(entry_id: str) -> bool:
    """Remove an entry created at run time; running schedulers stop firing it within a second."""
    return Schedules(get_client()).remove(entry_id)


def list_schedules() -> list[ScheduleInfo]:
    """Every entry with its next run time."""
    return Schedules(get_client()).list()
