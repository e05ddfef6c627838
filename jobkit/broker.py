"""The Redis broker jobkit runs on: Dramatiq's ``RedisBroker`` with jobkit's dispatch script (``broker.lua``).

What changes against the stock broker, each inside the one round trip Dramatiq already makes per message:

- delayed tasks and retries wait in Redis sorted sets (``<queue>.scheduled`` / ``<queue>.retry``), not in worker
  memory; every fetch forwards the due ones, so a delay can be any length and survives worker restarts;
- the dead-letter set keeps the message as its final attempt ended (with that attempt's error), trimmed by age and
  size;
- orphan recovery (tasks held by a worker whose heartbeat stopped) runs on a timer, and a worker sends heartbeats
  even while all its threads are busy, so a long task never makes a live worker look dead;
- a worker that is stopped hard hands everything it held straight back (``release``).
"""

from __future__ import annotations

import math
import time
from importlib.resources import files
from typing import Any, cast
from uuid import uuid4

import redis
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message
from dramatiq.middleware import Middleware, MiddlewareError

__all__ = ["JobkitBroker", "connect"]

_SCRIPT = files("jobkit").joinpath("broker.lua").read_bytes()

#: A worker whose last heartbeat is older than this is dead; its unfinished tasks run again elsewhere.
HEARTBEAT_TIMEOUT_MS = 15_000
#: How often each worker sends a heartbeat when it has nothing else to say to Redis.
HEARTBEAT_INTERVAL_S = 3.0
#: How often each consumer runs maintenance (orphan recovery, dead-letter trimming) along with a fetch.
MAINTENANCE_INTERVAL_S = 5.0
#: The longest an idle consumer sleeps between fetches; a due delayed task wakes it earlier.
IDLE_POLL_MAX_S = 0.2
#: Archived (dead) tasks are kept this long and at most this many per queue (Asynq's defaults).
DEAD_TTL_MS = 90 * 86_400_000
DEAD_MAX = 10_000


def connect(
    url: str, *, sentinels: tuple[tuple[str, int], ...] = (), master: str | None = None, password: str | None = None
) -> redis.Redis:
    """A Redis client for ``url``, or for the master named by Sentinel."""
    if sentinels:
        from redis.sentinel import Sentinel

        sentinel = Sentinel(list(sentinels), password=password, socket_timeout=2.0)
        client: redis.Redis = sentinel.master_for(master or "mymaster", password=password, socket_timeout=5.0)
        return client
    return redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=2.0, health_check_interval=30)


class JobkitBroker(RedisBroker):
    """Dramatiq's Redis broker with jobkit's keys and script; ``dramatiq`` CLI and middleware work unchanged."""

    def __init__(
        self,
        *,
        client: redis.Redis,
        namespace: str = "jobkit",
        middleware: list[Middleware] | None = None,
        heartbeat_timeout: int = HEARTBEAT_TIMEOUT_MS,
        dead_message_ttl: int = DEAD_TTL_MS,
        dead_max: int = DEAD_MAX,
    ) -> None:
        self._hooks: dict[str, list[Any]] = {}  # before super(): it adds the middleware
        super().__init__(
            client=client,
            namespace=namespace,
            middleware=middleware,
            heartbeat_timeout=heartbeat_timeout,
            dead_message_ttl=dead_message_ttl,
        )
        self.dead_max = dead_max
        self.scripts = {"dispatch": client.register_script(_SCRIPT)}

    # Dramatiq calls every middleware's hook for every signal, most of them the base class's no-op. jobkit runs ten
    # middleware, so per message it calls only the hooks a middleware actually defines (same order, same errors).
    def _hooks_for(self, signal: str) -> list[Any]:
        hooks = self._hooks.get(signal)
        if hooks is None:
            base = getattr(Middleware, signal, None)
            hooks = [getattr(m, signal) for m in self.middleware if getattr(type(m), signal, None) is not base]
            self._hooks[signal] = hooks
        return hooks

    def add_middleware(self, middleware: Middleware, **placement: Any) -> None:
        super().add_middleware(middleware, **placement)
        self._hooks.clear()

    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        for hook in self._hooks_for("before_" + signal):
            try:
                hook(self, *args, **kwargs)
            except MiddlewareError:
                raise
            except Exception:
                self.logger.critical("Unexpected failure in before_%s of %r.", signal, hook.__self__, exc_info=True)

    def emit_after(self, signal: str, *args: Any, **kwargs: Any) -> None:
        for hook in reversed(self._hooks_for("after_" + signal)):
            try:
                hook(self, *args, **kwargs)
            except Exception:
                self.logger.critical("Unexpected failure in after_%s of %r.", signal, hook.__self__, exc_info=True)

    @property
    def consumer_class(self) -> type[_JobkitConsumer]:
        return _JobkitConsumer

    def declare_queue(self, queue_name: str) -> None:
        # No ``<queue>.DQ`` delay queue: delayed messages live in Redis sorted sets instead of worker memory.
        if queue_name not in self.queues:
            self.emit_before("declare_queue", queue_name)
            self.queues.add(queue_name)
            self.emit_after("declare_queue", queue_name)

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        """Enqueue ``message`` now, or after ``delay`` milliseconds (any length: it waits in Redis)."""
        enqueued = self._enqueue(message, delay, None)
        assert enqueued is not None
        return enqueued

    def enqueue_once(self, message: Message[Any], claim_key: str, claim_ttl_ms: int) -> Message[Any] | None:
        """Enqueue ``message`` now unless ``claim_key`` is already claimed (then return None). The claim and the
        enqueue are one atomic step, so of any number of callers with the same key exactly one enqueues."""
        return self._enqueue(message, None, (claim_key, claim_ttl_ms))

    def _enqueue(self, message: Message[Any], delay: int | None, claim: tuple[str, int] | None) -> Message[Any] | None:
        message = message.copy(options={"redis_message_id": str(uuid4())})
        message.options.pop("eta", None)
        self.emit_before("enqueue", message, delay)
        rid = message.options["redis_message_id"]
        if delay is None or delay <= 0:
            claim_args = (claim[0], claim[1]) if claim else ()
            if not self.do_enqueue(message.queue_name, rid, message.encode(), *claim_args):
                return None
        else:
            kind = "retry" if message.options.get("jobkit_retry") else "scheduled"
            # Rounded up: a task never becomes due before the time asked for.
            due = math.ceil(time.time() * 1000 + delay)
            self.do_schedule(message.queue_name, rid, message.encode(), due, kind)
        self.emit_after("enqueue", message, delay)
        return message

    def flush(self, queue_name: str) -> None:
        self.do_purge(queue_name)

    def release(self) -> int:
        """Hand back every task this process holds (running or prefetched) and stop looking alive."""
        return int(self._dispatch("release")("", maintenance=False))

    def dead_letters(self, queue_name: str) -> list[Message[Any]]:
        """The archived messages of a queue, oldest first (each as its final attempt ended)."""
        key = f"{self.namespace}:{queue_name}.XQ"
        rids = cast(list[bytes], self.client.zrange(key, 0, -1))
        if not rids:
            return []
        data = cast(list[bytes | None], self.client.hmget(f"{key}.msgs", rids))
        return [Message.decode(item) for item in data if item is not None]

    def _dispatch(self, command: str) -> Any:
        dispatch = self.scripts["dispatch"]
        keys = [self.namespace]

        def do_dispatch(queue_name: str, *args: Any, maintenance: bool = False) -> Any:
            return dispatch(
                keys=keys,
                args=[
                    command,
                    current_millis(),
                    queue_name,
                    self.broker_id,
                    self.heartbeat_timeout,
                    self.dead_message_ttl,
                    self.dead_max,
                    "1" if maintenance else "0",
                    *args,
                ],
            )

        return do_dispatch


class _JobkitConsumer(Consumer):
    """Fetches from one queue: prefetch-bounded, heartbeating while busy, sleeping until the next due task."""

    def __init__(self, broker: JobkitBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        self.broker = broker
        self.queue_name = queue_name
        self.prefetch = prefetch
        self.timeout = timeout
        self.message_cache: list[bytes] = []
        self.queued_message_ids: set[str] = set()
        self.misses = 0
        self.last_call = 0.0
        self.last_maintenance = 0.0
        self._fetch = broker._dispatch("fetch")
        self._ack = broker._dispatch("ack")
        self._nack = broker._dispatch("nack")
        self._heartbeat = broker._dispatch("heartbeat")

    @property
    def outstanding_message_count(self) -> int:
        return len(self.queued_message_ids) + len(self.message_cache)

    def ack(self, message: MessageProxy) -> None:
        try:
            self._ack(self.queue_name, message.options["redis_message_id"])
            self.last_call = time.monotonic()
        except redis.ConnectionError as e:
            raise ConnectionClosed(e) from None
        finally:
            self.queued_message_ids.discard(message.message_id)

    def nack(self, message: MessageProxy) -> None:
        try:
            self._nack(self.queue_name, message.options["redis_message_id"], message.encode())
            self.last_call = time.monotonic()
        except redis.ConnectionError as e:
            raise ConnectionClosed(e) from None
        finally:
            self.queued_message_ids.discard(message.message_id)

    def requeue(self, messages: Any) -> None:
        rids = [message.options["redis_message_id"] for message in messages]
        if rids:
            self.broker.do_requeue(self.queue_name, *rids)

    def __next__(self) -> MessageProxy | None:
        try:
            if self.message_cache:
                self.misses = 0
                message = Message.decode(self.message_cache.pop(0))
                self.queued_message_ids.add(message.message_id)
                return MessageProxy(message)
            now = time.monotonic()
            wanted = self.prefetch - self.outstanding_message_count
            if wanted <= 0:
                # Every thread is busy: keep saying we are alive, then wait for a slot.
                if now - self.last_call >= HEARTBEAT_INTERVAL_S:
                    self._heartbeat(self.queue_name)
                    self.last_call = now
                time.sleep(0.005)
                return None
            maintenance = now - self.last_maintenance >= MAINTENANCE_INTERVAL_S
            if maintenance:
                self.last_maintenance = now
            next_due, *data = self._fetch(self.queue_name, wanted, maintenance=maintenance)
            self.last_call = now
            if data:
                self.message_cache = [item for item in data if item is not None]
                return self.__next__() if self.message_cache else None
            self.misses = min(self.misses + 1, 16)
            pause = min(IDLE_POLL_MAX_S, 0.001 * 2**self.misses)
            if int(next_due) >= 0:
                pause = min(pause, max(0.0, (int(next_due) - current_millis()) / 1000))
            time.sleep(pause)
            return None
        except redis.ConnectionError as e:
            raise ConnectionClosed(e) from None
