"""Flow control per task, shared by every worker through Redis: ``unique``, ``rate_limit`` and ``concurrency``.

- ``unique: <ttl>``: ``Client.dispatch`` takes a lock (``SET NX`` with the TTL, value = task id) in the same Lua
  call that enqueues the task; the broker's ack or nack gives it back within its own call when the task completes
  or is archived, and :meth:`~jobkit.inspector.Queues.delete` (in its own Lua step) when it is deleted.
- ``rate_limit: N/s|m|h``: a sliding window of start times (at most N starts in *any* window of that length).
- ``concurrency: N``: a counting semaphore whose slots expire after the task's timeout (a killed worker's slot frees
  itself).

A task over a limit does not run and does not wait in a worker thread: the message goes back to Redis with a delay
(the scheduled set) and this attempt is acked as "deferred", which counts neither as processed, failed nor retried.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from typing import Any

import redis
from dramatiq import Broker, Middleware
from dramatiq.middleware import SkipMessage

from .model import TaskSpec
from .placeholders import TemplateError, render

__all__ = ["FlowControl", "describe_limits", "unique_lock_key"]

#: Wait before a task refused by its concurrency cap tries again (jittered up to twice this).
CONCURRENCY_RETRY_MS = 100
#: A concurrency slot outlives the task's time limit by this much before it expires on its own.
SLOT_GRACE_MS = 30_000

# KEYS: window zset. ARGV: limit, window ms, member. Returns 0 (go) or the ms until a start frees up.
_RATE_LUA = """
local t = redis.call("time")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call("zremrangebyscore", KEYS[1], "-inf", now - window)
if redis.call("zcard", KEYS[1]) < limit then
    redis.call("zadd", KEYS[1], now, ARGV[3])
    redis.call("pexpire", KEYS[1], window)
    return 0
end
local oldest = redis.call("zrange", KEYS[1], 0, 0, "WITHSCORES")
return math.max(1, tonumber(oldest[2]) + window - now + 1)
"""

# KEYS: holders zset (holder -> expires at). ARGV: limit, ttl ms, holder. Returns 1 if the slot is taken.
_SLOT_LUA = """
local t = redis.call("time")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call("zremrangebyscore", KEYS[1], "-inf", now)
if redis.call("zscore", KEYS[1], ARGV[3]) or redis.call("zcard", KEYS[1]) < limit then
    redis.call("zadd", KEYS[1], now + ttl, ARGV[3])
    redis.call("pexpire", KEYS[1], ttl)
    return 1
end
return 0
"""


# KEYS: lock. ARGV: task id. Deletes the lock only while that task holds it.
def _rate_key(namespace: str, task: str) -> str:
    return f"{namespace}:limit:rate:{task}"


def _slot_key(namespace: str, task: str) -> str:
    return f"{namespace}:limit:running:{task}"


# -- unique ----------------------------------------------------------------------------------------------------------
def unique_lock_key(namespace: str, spec: TaskSpec, payload: dict[str, Any]) -> str:
    """``{ns}:unique:<task>:<digest>`` of the rendered ``unique_key``, or of the canonical JSON of the payload."""
    if spec.unique_key is not None:
        try:
            identity: Any = render(spec.unique_key, payload)
        except TemplateError as exc:
            from .errors import PayloadError

            raise PayloadError(f"{spec.name}: unique_key {exc}") from None
    else:
        identity = payload
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return f"{namespace}:unique:{spec.name}:{hashlib.sha256(canonical.encode()).hexdigest()[:32]}"


# -- the middleware --------------------------------------------------------------------------------------------------
class _QuietDeferrals(logging.Filter):
    """Dramatiq logs every skipped message as a warning; a deferral is routine, so it is not one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Message %s was skipped." and record.args:
            message = record.args[0] if isinstance(record.args, tuple) else None
            return not getattr(message, "options", {}).get("jobkit_deferred")
        return True


class FlowControl(Middleware):
    """Rate limits and concurrency caps before a task starts; unique locks released when it ends."""

    def __init__(self) -> None:
        self.holding: set[str] = set()  # redis message ids holding a concurrency slot in this process

    @property
    def actor_options(self) -> set[str]:
        return {"jobkit_rate_limit", "jobkit_concurrency"}

    def after_worker_boot(self, broker: Broker, worker: Any) -> None:
        logging.getLogger("dramatiq.worker.WorkerThread").addFilter(_QuietDeferrals())

    def before_process_message(self, broker: Broker, message: Any) -> None:
        actor = broker.get_actor(message.actor_name)
        cap: int | None = actor.options.get("jobkit_concurrency")
        rate: tuple[int, int] | None = actor.options.get("jobkit_rate_limit")
        if cap is None and rate is None:
            return
        client: redis.Redis = broker.client  # type: ignore[attr-defined]
        namespace: str = broker.namespace  # type: ignore[attr-defined]
        rid = message.options["redis_message_id"]
        if cap is not None:
            ttl = int(message.options.get("time_limit") or actor.options.get("time_limit", 600_000)) + SLOT_GRACE_MS
            if not client.eval(_SLOT_LUA, 1, _slot_key(namespace, message.actor_name), cap, ttl, rid):
                self._defer(broker, message, CONCURRENCY_RETRY_MS + random.randint(0, CONCURRENCY_RETRY_MS))
            self.holding.add(rid)
        if rate is not None:
            count, window_ms = rate
            wait = int(client.eval(_RATE_LUA, 1, _rate_key(namespace, message.actor_name), count, window_ms, rid))
            if wait:
                self._release_slot(broker, message)
                # Spread the waiting ones over a little time after the window frees, not all at the same instant.
                self._defer(broker, message, wait + random.randint(0, max(1, min(window_ms // count, 1000))))

    @staticmethod
    def _defer(broker: Broker, message: Any, delay_ms: int) -> None:
        broker.enqueue(message, delay=delay_ms)
        message.options["jobkit_deferred"] = True  # after enqueue: the copy waiting in Redis does not carry it
        raise SkipMessage("deferred by a rate limit or concurrency cap")

    def _release_slot(self, broker: Broker, message: Any) -> None:
        rid = message.options.get("redis_message_id")
        if rid in self.holding:
            self.holding.discard(rid)
            broker.client.zrem(_slot_key(broker.namespace, message.actor_name), rid)  # type: ignore[attr-defined]

    def after_process_message(
        self, broker: Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        self._release_slot(broker, message)

    def after_skip_message(self, broker: Broker, message: Any) -> None:
        self._release_slot(broker, message)


def describe_limits(client: redis.Redis, namespace: str, spec: TaskSpec) -> dict[str, Any]:
    """The limits applied to a task and how much of them is in use now (for the API and the dashboard)."""
    running = starts = None
    if spec.concurrency is not None:
        running = int(client.zcard(_slot_key(namespace, spec.name)))
    if spec.rate_limit is not None:
        window_ms = int(spec.rate_limit.per.total_seconds() * 1000)
        seconds, micros = client.time()
        now = int(seconds) * 1000 + int(micros) // 1000
        starts = int(client.zcount(_rate_key(namespace, spec.name), now - window_ms, "+inf"))
    return {
        "task": spec.name,
        "unique": int(spec.unique.total_seconds()) if spec.unique is not None else None,
        "unique_key": spec.unique_key,
        "rate_limit": str(spec.rate_limit) if spec.rate_limit is not None else None,
        "concurrency": spec.concurrency,
        "running": running,
        "starts_in_window": starts,
    }
