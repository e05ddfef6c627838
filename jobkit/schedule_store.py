"""Schedule definitions in Redis, the one source of truth every scheduler process reads.

Keys (``ns`` = the settings namespace):

- ``ns:schedules``            hash  id -> JSON definition (task, spec, payload, queue, timezone, source, created_ms)
- ``ns:schedules:version``    int   bumped on every change; schedulers poll it to pick changes up within a second
- ``ns:schedules:last``       hash  id -> the latest nominal fire time (ms) that was enqueued
- ``ns:schedules:fired:<id>:<nominal_ms>``  claim of one fire time, set in the same Lua call as the enqueue

Definitions are JSON, never pickles: any process (or a person with redis-cli) can read them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import redis

from .model import ScheduleSpec

__all__ = ["CODE_SOURCES", "Reconciled", "ScheduleStore", "StoredSchedule"]

#: Entries whose definition lives in files or code; startup reconciles them, the API may not remove them.
CODE_SOURCES = ("yaml:", "periodiq:")

_SET_MAX = """
local current = redis.call('hget', KEYS[1], ARGV[1])
if not current or tonumber(current) < tonumber(ARGV[2]) then
    redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
end
return 1
"""


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

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.redis = client
        self.namespace = namespace
        self.key = f"{namespace}:schedules"
        self.version_key = f"{self.key}:version"
        self.last_key = f"{self.key}:last"
        self._set_max = client.register_script(_SET_MAX)

    def claim_key(self, entry_id: str, nominal_ms: int) -> str:
        return f"{self.key}:fired:{entry_id}:{nominal_ms}"

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

    # -- writing ----------------------------------------------------------------------------------------------------
    def add(self, spec: ScheduleSpec, created_ms: int | None = None) -> StoredSchedule:
        stored = StoredSchedule(spec, created_ms if created_ms is not None else _now_ms())
        pipe = self.redis.pipeline()
        pipe.hset(self.key, spec.id, stored.definition())
        pipe.hdel(self.last_key, spec.id)
        pipe.incr(self.version_key)
        pipe.execute()
        return stored

    def remove(self, entry_id: str) -> bool:
        pipe = self.redis.pipeline()
        pipe.hdel(self.key, entry_id)
        pipe.hdel(self.last_key, entry_id)
        removed = bool(pipe.execute()[0])
        if removed:
            self.redis.incr(self.version_key)
        return removed

    def mark_fired(self, entry_id: str, nominal_ms: int) -> None:
        self._set_max(keys=[self.last_key], args=[entry_id, nominal_ms])

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
