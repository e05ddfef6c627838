"""Schedules created, removed and listed at run time (the API, ``jobkit.schedule_once`` and friends); running
schedulers pick changes up within a second."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from jobkit.config.cron import EveryTrigger, OnceTrigger, load_timezone, parse_spec
from jobkit.config.model import ScheduleSpec
from jobkit.durations import format_duration, parse_duration
from jobkit.errors import CronError, DurationError, ScheduleError
from jobkit.scheduling.fire_loop import iso_ms, trigger_for
from jobkit.scheduling.store import CODE_SOURCES, ScheduleStore
from jobkit.services.client import Client

__all__ = ["ScheduleInfo", "Schedules"]


@dataclass(frozen=True)
class ScheduleInfo:
    """One entry as listed by ``jobkit schedules``, ``jobkit.list_schedules()`` and the API."""

    id: str
    task: str
    spec: str
    payload: dict[str, Any]
    queue: str | None
    timezone: str
    source: str
    next_run_at: datetime | None
    last_run_at: datetime | None = None
    """The nominal time of its latest fire (None before the first)."""
    skipped: int = 0
    """Fires skipped because the task is ``unique`` and its lock was held (the previous run not finished yet)."""


class Schedules:
    """Create, remove and list entries at run time; running schedulers pick changes up within a second."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.store = ScheduleStore(client.broker.lua)

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
        last, skipped = self.store.last_fired(), self.store.skipped()
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
                    dict(spec.payload),
                    spec.queue,
                    spec.timezone,
                    spec.source,
                    next_at,
                    last_at,
                    skipped.get(entry_id, 0),
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
        payload = dict(payload or {})
        builder = self.client.builder
        builder.check_payload(task, payload)
        if queue is not None:
            builder.queue_name(task, queue)
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
