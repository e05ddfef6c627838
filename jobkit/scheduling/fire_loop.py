"""``jobkit scheduler``: any number of identical processes fire each entry's nominal times exactly once.

Every process reads the same definitions from Redis and computes the same nominal fire times (whole epoch
milliseconds). Each fire's message comes from the message builder (the same checks as a dispatch) with one more
claim, ``K.schedule_fired(id, nominal_ms)``: the claim and the enqueue are one Lua step, so whichever process gets
there first enqueues and the others find the claim. No leader, no lock to hand over: when a process dies the others
simply keep claiming, so there is no fail-over gap.

**A ``unique`` task whose lock is held** (an earlier fire, or a dispatch, still queued or running) is not enqueued
again: the fire is skipped and counted in the entry's ``skipped`` (as Asynq refuses a task whose ``TaskID``
exists). The fire claim is taken first, so however many schedulers run, each skipped fire counts once.

Missed fires (every scheduler down, or this one stalled) within ``grace`` are coalesced into one enqueue of the
latest; older ones are skipped and logged. Changes made through the API reach running schedulers through a version
counter each one polls every ``poll_interval``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from redis.exceptions import RedisError

from jobkit.config.cron import OnceTrigger, Trigger, load_timezone, parse_spec
from jobkit.config.model import ScheduleSpec
from jobkit.durations import format_duration
from jobkit.engine.messages import Claim
from jobkit.errors import CronError, DispatchError
from jobkit.scheduling.store import ScheduleStore, StoredSchedule
from jobkit.services.client import Client

__all__ = ["DEFAULT_GRACE", "Scheduler", "iso_ms", "trigger_for"]

log = logging.getLogger("jobkit.scheduler")

DEFAULT_GRACE = timedelta(seconds=60)
#: How often a scheduler looks for added or removed entries; it also never sleeps longer than this.
POLL_INTERVAL_S = 0.25
#: A claim only needs to outlive the grace period (older fire times are never enqueued), plus room for clock skew
#: between hosts; an hour keeps Redis small even for `@every 1s` entries.
CLAIM_MARGIN = timedelta(hours=1)


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
    skipped: int = field(init=False, default=0)
    """Fires this process skipped because the task's unique lock was held."""
    _version: int = field(init=False, default=-1)

    def __post_init__(self) -> None:
        self.store = ScheduleStore(self.client.broker.lua)
        self.grace_ms = int(self.grace.total_seconds() * 1000)
        self.claim_ttl_ms = self.grace_ms + int(CLAIM_MARGIN.total_seconds() * 1000)

    @property
    def version(self) -> int:
        """The version of the definitions this scheduler acts on (-1 before it first read them)."""
        return self._version

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
        claim = Claim(self.store.claim_key(spec.id, nominal_ms), self.claim_ttl_ms, "fire")
        try:
            outgoing = self.client.builder.build(
                spec.task,
                dict(spec.payload),
                queue=spec.queue,
                options={"scheduled_at": iso_ms(nominal_ms), "schedule_id": spec.id},
                claims=(claim,),
            )
        except DispatchError as exc:  # e.g. the task is gone from this scheduler's jobs.yaml
            log.error("schedule %s: %s; skipped", spec.id, exc)
            return
        message, refused = self.client.broker.send(outgoing)
        if refused is None:
            self.store.mark_fired(spec.id, nominal_ms)
            self.enqueued += 1
            log.info("schedule %s: %s %s enqueued for %s", spec.id, spec.task, message.message_id, iso_ms(nominal_ms))
        elif refused.claim.kind == "unique":  # this process won the fire; the task's previous run still holds it
            self.store.mark_skipped(spec.id)
            self.skipped += 1
            log.info(
                "schedule %s: %s skipped for %s: its unique lock is held by %s",
                spec.id,
                spec.task,
                iso_ms(nominal_ms),
                refused.holder,
            )
