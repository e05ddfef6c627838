"""Schedule definitions in Redis, the one source of truth every scheduler process reads.

Keys (see :mod:`jobkit.store.keys`): ``K.schedules`` (id -> JSON definition: task, spec, payload, queue, timezone,
source, created_ms), ``K.schedules_version`` (bumped on every change; schedulers poll it to pick changes up within a
second), ``K.schedules_last`` (id -> the latest nominal fire time enqueued), ``K.schedules_skipped`` (id -> fires
skipped because the task's unique lock was held), and ``K.schedule_fired(id, ms)``, the claim of one fire time, taken
in the same Lua step as the enqueue.

Definitions are JSON, never pickles: any process (or a person with redis-cli) can read them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from jobkit.config.model import ScheduleSpec
from jobkit.store.keys import Keys
from jobkit.store.scripts import Scripts

__all__ = ["CODE_SOURCES", "Reconciled", "ScheduleStore", "StoredSchedule"]

#: Entries whose definition lives in files or code; startup reconciles them, the API may not remove them.
CODE_SOURCES = ("yaml:", "periodiq:")


@dataclass(frozen=True)
class StoredSchedule:
    spec: ScheduleSpec
    created_ms: int
    """When this definition was stored; an entry never fires for a time before it."""

    def definition(self) -> str:
        """The JSON text stored in Redis, which is also how schedulers tell a changed entry from an unchanged one."""
        return _encode(self.spec, self.created_ms)


@dataclass(frozen=True)
class Reconciled:
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: tuple[str, ...]


def _fields(spec: ScheduleSpec) -> dict[str, Any]:
    return {
        "id": spec.id,
        "task": spec.task,
        "spec": spec.spec,
        "payload": dict(spec.payload),
        "queue": spec.queue,
        "timezone": spec.timezone,
        "source": spec.source,
    }


def _encode(spec: ScheduleSpec, created_ms: int) -> str:
    return json.dumps({**_fields(spec), "created_ms": created_ms}, sort_keys=True, separators=(",", ":"))


def _decode(text: bytes | str) -> StoredSchedule:
    data = json.loads(text)
    spec = ScheduleSpec(
        id=data["id"],
        task=data["task"],
        spec=data["spec"],
        payload=data.get("payload") or {},
        queue=data.get("queue"),
        timezone=data.get("timezone") or "UTC",
        source=data.get("source") or "api",
    )
    return StoredSchedule(spec, int(data["created_ms"]))


class ScheduleStore:
    """Reads and writes the schedule keys of one namespace."""

    def __init__(self, scripts: Scripts) -> None:
        self.redis = scripts.client
        self.scripts = scripts
        keys: Keys = scripts.keys
        self.keys = keys
        self.key = keys.schedules
        self.version_key = keys.schedules_version
        self.last_key = keys.schedules_last
        self.skipped_key = keys.schedules_skipped

    def claim_key(self, entry_id: str, nominal_ms: int) -> str:
        return self.keys.schedule_fired(entry_id, nominal_ms)

    # -- reading ----------------------------------------------------------------------------------------------------
    def version(self) -> int:
        return int(cast(bytes | None, self.redis.get(self.version_key)) or 0)

    def all(self) -> dict[str, StoredSchedule]:
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self.key))
        return {key.decode(): _decode(value) for key, value in raw.items()}

    def get(self, entry_id: str) -> StoredSchedule | None:
        raw = cast(bytes | None, self.redis.hget(self.key, entry_id))
        return _decode(raw) if raw is not None else None

    def last_fired(self) -> dict[str, int]:
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self.last_key))
        return {key.decode(): int(value) for key, value in raw.items()}

    def skipped(self) -> dict[str, int]:
        """Entry id -> fires skipped because the task's unique lock was held."""
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self.skipped_key))
        return {key.decode(): int(value) for key, value in raw.items()}

    # -- writing ----------------------------------------------------------------------------------------------------
    def add(self, spec: ScheduleSpec, created_ms: int | None = None) -> StoredSchedule:
        stored = StoredSchedule(spec, created_ms if created_ms is not None else _now_ms())
        pipe = self.redis.pipeline()
        pipe.hset(self.key, spec.id, stored.definition())
        pipe.hdel(self.last_key, spec.id)
        pipe.hdel(self.skipped_key, spec.id)
        pipe.incr(self.version_key)
        pipe.execute()
        return stored

    def remove(self, entry_id: str) -> bool:
        pipe = self.redis.pipeline()
        pipe.hdel(self.key, entry_id)
        pipe.hdel(self.last_key, entry_id)
        pipe.hdel(self.skipped_key, entry_id)
        removed = bool(pipe.execute()[0])
        if removed:
            self.redis.incr(self.version_key)
        return removed

    def mark_fired(self, entry_id: str, nominal_ms: int) -> None:
        self.scripts.call("schedules", "fired", entry_id, nominal_ms)

    def mark_skipped(self, entry_id: str) -> None:
        self.redis.hincrby(self.skipped_key, entry_id, 1)

    def reconcile(self, specs: Iterable[ScheduleSpec], now_ms: int | None = None) -> Reconciled:
        """Make the stored file/code entries equal ``specs``: add new ones, replace changed ones (they start afresh
        from now), delete those no longer declared. An unchanged entry is not touched, so it keeps its next fire."""
        now_ms = now_ms if now_ms is not None else _now_ms()
        wanted = {spec.id: spec for spec in specs}
        stored = self.all()
        added, changed, unchanged = [], [], []
        for entry_id, spec in wanted.items():
            current = stored.get(entry_id)
            if current is None:
                if self.redis.hsetnx(self.key, entry_id, _encode(spec, now_ms)):
                    added.append(entry_id)
                else:
                    unchanged.append(entry_id)  # another scheduler added it a moment ago
            elif _fields(current.spec) != _fields(spec):
                self.add(spec, now_ms)
                changed.append(entry_id)
            else:
                unchanged.append(entry_id)
        removed = [
            entry_id
            for entry_id, current in stored.items()
            if current.spec.source.startswith(CODE_SOURCES) and entry_id not in wanted and self.remove(entry_id)
        ]
        if added:
            self.redis.incr(self.version_key)
        return Reconciled(tuple(added), tuple(changed), tuple(removed), tuple(unchanged))


def _now_ms() -> int:
    return int(time.time() * 1000)
