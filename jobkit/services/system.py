"""Workers (from their heartbeats), task types and who serves them, and Redis facts for the dashboard: the service
behind ``/api/system``.

A worker is alive while its heartbeat (``K.heartbeats``) is younger than the broker's timeout. What a heartbeat cannot
say (host, pid, start time, thread count, the queues it consumes, the task types it declared) each worker process
writes once at boot, through the ``WorkerInfo`` middleware, into ``K.workers``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, cast

from redis.exceptions import ResponseError

from jobkit.config.model import TaskSpec
from jobkit.services.client import Client

__all__ = ["MemoryReport", "QueueMemory", "RedisInfo", "System", "TaskType", "WorkerRef", "WorkerStatus", "human_bytes"]


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def human_bytes(n: int) -> str:
    """Bytes as Redis's INFO writes them: ``512B``, ``1.50K``, ``12.25M``, ``2.00G``."""
    for unit, size in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n}B"


@dataclass(frozen=True)
class QueueMemory:
    queue: str
    bytes: int
    """What the queue's keys take in Redis (``MEMORY USAGE``, which samples large hashes and sets)."""
    largest_key: str | None
    largest_bytes: int


@dataclass(frozen=True)
class MemoryReport:
    """Redis memory, and jobkit's own share of it: each queue's keys and jobkit's fixed keys. Per-task keys (unique
    locks, workflow state, progress) are not counted: finding them would need a scan; each is bounded by its TTL."""

    used_memory: int
    used_memory_human: str
    maxmemory: int
    jobkit_bytes: int
    jobkit_human: str
    queues: list[QueueMemory]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line: ``9.80M of 12.25M used: default 9.70M (largest jobkit:default.done.msgs 7.01M), low 2.00K``."""
        parts = []
        for q in self.queues:
            largest = f" (largest {q.largest_key} {human_bytes(q.largest_bytes)})" if q.largest_key else ""
            parts.append(f"{q.queue} {human_bytes(q.bytes)}{largest}")
        limit = f", limit {human_bytes(self.maxmemory)}" if self.maxmemory else ""
        return f"{self.jobkit_human} of {self.used_memory_human} used{limit}: " + ", ".join(parts)


@dataclass(frozen=True)
class WorkerStatus:
    id: str
    """The broker id of one worker process (Dramatiq's ``broker_id``)."""
    host: str | None
    pid: int | None
    threads: int | None
    started_at: str | None
    last_heartbeat_at: str
    queues: list[str]
    """Queues this worker consumes (as it said at boot; the queues it fetched from for a worker that did not)."""
    tasks: list[str] | None
    """The task types this worker runs (as it said at boot); None for a worker that did not say."""
    busy: int
    """Tasks this worker is running now."""
    held: int
    """Tasks this worker holds: running, or prefetched and about to run."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WorkerRef:
    id: str
    host: str | None
    pid: int | None


@dataclass(frozen=True)
class TaskType:
    """A task declared in jobs.yaml, its settings, and the live workers that run it."""

    task: str
    queue: str
    api: bool
    max_retries: int
    timeout_seconds: float
    retention_seconds: float
    retention_max: int
    """At most this many of the queue's completed tasks are kept (``retention.max``)."""
    unique_seconds: float | None
    unique_key: str | None
    rate_limit: str | None
    concurrency: int | None
    sensitive: list[str]
    workers: list[WorkerRef]
    """Live workers that run this task type: they consume its queue and declared it (a worker that did not list
    its task types counts when it consumes the queue)."""
    served: bool
    """False when no live worker runs it: dispatched tasks of this type wait."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RedisInfo:
    version: str
    mode: str
    uptime_seconds: int
    used_memory_human: str
    used_memory_peak_human: str
    maxmemory_human: str
    connected_clients: int
    namespace: str
    keys: int
    """Keys in the whole database (DBSIZE), not only this namespace: counting those would need a scan."""
    jobkit_memory_human: str | None = None
    """jobkit's share of the memory, per queue with its largest key (:meth:`MemoryReport.summary`)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class System:
    """Reads worker heartbeats and server facts; never writes."""

    def __init__(self, client: Client) -> None:
        self.project = client.project
        self.redis = client.redis
        self.keys = client.keys
        self.namespace = client.keys.namespace
        self.heartbeat_timeout_ms = int(client.broker.heartbeat_timeout)

    def live_count(self) -> int:
        """Worker processes whose last heartbeat is younger than the dead-worker timeout."""
        since = int(time.time() * 1000) - self.heartbeat_timeout_ms
        return int(self.redis.zcount(self.keys.heartbeats, since, "+inf"))

    def workers(self) -> list[WorkerStatus]:
        """Live workers, most recently started first."""
        now_ms = time.time() * 1000
        beats = cast(
            list[tuple[bytes, float]],
            self.redis.zrangebyscore(self.keys.heartbeats, now_ms - self.heartbeat_timeout_ms, "+inf", withscores=True),
        )
        if not beats:
            return []
        ids = [_text(worker) for worker, _ in beats]
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(self.keys.workers, ids)
        for worker in ids:
            pipe.smembers(self.keys.worker_acks(worker))
        found = pipe.execute()
        facts = [json.loads(raw) if raw else {} for raw in found[0]]
        queues = [sorted(_text(q) for q in members) for members in found[1:]]
        pairs = [(index, name) for index, names in enumerate(queues) for name in names]
        pipe = self.redis.pipeline(transaction=False)
        for index, name in pairs:
            pipe.smembers(self.keys.worker_queue_acks(ids[index], name))
        held = [0] * len(ids)
        busy = [0] * len(ids)
        holdings: list[tuple[int, str, list[str]]] = []
        for (index, name), members in zip(pairs, pipe.execute(), strict=True):
            rids = sorted(_text(rid) for rid in members)
            held[index] += len(rids)
            if rids:
                holdings.append((index, name, rids))
        pipe = self.redis.pipeline(transaction=False)
        for _, name, rids in holdings:
            pipe.hmget(self.keys.active(name), rids)
        for (index, _, _), started in zip(holdings, pipe.execute(), strict=True):
            busy[index] += sum(1 for value in started if value)
        statuses = []
        for index, (worker, beat) in enumerate(zip(ids, (b for _, b in beats), strict=True)):
            info, names = facts[index], queues[index]
            statuses.append(
                WorkerStatus(
                    id=worker,
                    host=info.get("host"),
                    pid=info.get("pid"),
                    threads=info.get("threads"),
                    started_at=info.get("started_at"),
                    last_heartbeat_at=_iso(beat),
                    queues=info.get("queues") or names,
                    tasks=info.get("tasks"),
                    busy=busy[index],
                    held=held[index],
                )
            )
        return sorted(statuses, key=lambda status: status.started_at or "", reverse=True)

    def task_types(self) -> list[TaskType]:
        """Every task of jobs.yaml (by name) with its settings and the live workers that run it."""
        workers = self.workers()
        return [self._task_type(spec, workers) for _, spec in sorted(self.project.tasks.items())]

    @staticmethod
    def _task_type(spec: TaskSpec, workers: list[WorkerStatus]) -> TaskType:
        serving = [
            WorkerRef(w.id, w.host, w.pid)
            for w in workers
            if spec.queue in w.queues and (w.tasks is None or spec.name in w.tasks)
        ]
        return TaskType(
            task=spec.name,
            queue=spec.queue,
            api=spec.api,
            max_retries=spec.retry.max_retries,
            timeout_seconds=spec.timeout.total_seconds(),
            retention_seconds=spec.retention.total_seconds(),
            retention_max=spec.retention_max,
            unique_seconds=spec.unique.total_seconds() if spec.unique is not None else None,
            unique_key=spec.unique_key,
            rate_limit=str(spec.rate_limit) if spec.rate_limit is not None else None,
            concurrency=spec.concurrency,
            sensitive=list(spec.sensitive),
            workers=serving,
            served=bool(serving),
        )

    def redis_info(self) -> RedisInfo:
        info = self.redis.info()
        return RedisInfo(
            version=str(info.get("redis_version", "?")),
            mode=str(info.get("redis_mode", "standalone")),
            uptime_seconds=int(info.get("uptime_in_seconds", 0)),
            used_memory_human=str(info.get("used_memory_human", "?")),
            used_memory_peak_human=str(info.get("used_memory_peak_human", "?")),
            maxmemory_human=str(info.get("maxmemory_human", "0B")),
            connected_clients=int(info.get("connected_clients", 0)),
            namespace=self.namespace,
            keys=int(self.redis.dbsize()),
            jobkit_memory_human=self._memory_summary(),
        )

    def _memory_summary(self) -> str | None:
        report = self.memory_or_none()
        return report.summary() if report is not None else None

    def memory_or_none(self) -> MemoryReport | None:
        """:meth:`memory`, or None where Redis refuses ``MEMORY USAGE`` (an ACL, a proxy): the rest still answers."""
        try:
            return self.memory()
        except ResponseError:
            return None

    def memory(self) -> MemoryReport:
        """Redis's ``used_memory`` and what jobkit's keys take, per queue with its largest key, in one round trip."""
        per_queue = {name: self.keys.queue_keys(name) for name in self.project.queues}
        fixed = [
            self.keys.heartbeats, self.keys.workers, self.keys.paused, self.keys.schedules, self.keys.schedules_last,
            self.keys.schedules_skipped, self.keys.health, self.keys.alert_samples, self.keys.revoked_tokens,
        ]  # fmt: skip
        pipe = self.redis.pipeline(transaction=False)
        pipe.info("memory")
        names = [key for keys in per_queue.values() for key in keys] + fixed
        for key in names:
            pipe.memory_usage(key)
        info, *sizes = pipe.execute()
        size_of = {key: int(size or 0) for key, size in zip(names, sizes, strict=True)}
        queues = []
        for queue, keys in per_queue.items():
            largest = max(keys, key=lambda k: size_of[k])
            queues.append(
                QueueMemory(
                    queue=queue,
                    bytes=sum(size_of[k] for k in keys),
                    largest_key=largest if size_of[largest] else None,
                    largest_bytes=size_of[largest],
                )
            )
        total = sum(size_of.values())
        used = int(info.get("used_memory", 0))
        return MemoryReport(
            used_memory=used,
            used_memory_human=str(info.get("used_memory_human", human_bytes(used))),
            maxmemory=int(info.get("maxmemory", 0)),
            jobkit_bytes=total,
            jobkit_human=human_bytes(total),
            queues=queues,
        )
