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

import asyncio
import math
import threading
import time
from collections import deque
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
#: How often each consumer runs maintenance (orphan recovery, dead-letter trimming) along with a fetch.
MAINTENANCE_INTERVAL_S = 5.0
#: The longest an idle consumer sleeps between fetches; a due delayed task wakes it earlier.
IDLE_POLL_MAX_S = 0.2
#: How often a consumer whose slots are all taken still talks to Redis (heartbeat, pause flag).
BUSY_POLL_S = 0.25
#: A start marker waits at most this long for another call to ride along with.
START_FLUSH_S = 0.05
#: How long a completed task stays inspectable unless its task says otherwise.
DEFAULT_RETENTION_MS = 86_400_000
#: Commands a client sends (dispatch, scheduler); everything else comes from a worker.
_CLIENT_COMMANDS = frozenset({"enqueue", "schedule"})
#: Connection settings an asyncio connection understands (the sync pool carries sync-only helpers too).
_ASYNC_CONNECTION_KEYS = {
    "host", "port", "db", "username", "password", "path", "socket_timeout", "socket_connect_timeout",
    "socket_keepalive", "health_check_interval", "client_name", "ssl_keyfile", "ssl_certfile", "ssl_cert_reqs",
    "ssl_ca_certs", "ssl_ca_data", "ssl_check_hostname",
}  # fmt: skip
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
        self.started: deque[tuple[str, str, float]] = deque()
        self._async: Any = None
        self._batcher: _Batcher | None = None
        #: Set by the worker's arbiter: where a paused queue's prefetched messages are taken back from.
        self.arbiter: Any = None
        #: Queue weights and strictness of the project (set when its actors are declared).
        self.queue_weights: dict[str, int] = {}
        self.strict_priority = False
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
        message, command, args = self._prepare(message, delay, None)
        self._dispatch(command)(message.queue_name, *args)
        self.emit_after("enqueue", message, delay)
        return message

    def enqueue_claimed(
        self, message: Message[Any], claim_key: str, claim_ttl_ms: int, *, delay: int | None = None
    ) -> tuple[Message[Any], str | None]:
        """Enqueue ``message`` unless ``claim_key`` is claimed already; claim and enqueue are one atomic step, so of
        any number of callers with the same key exactly one enqueues. Returns the message and None, or the message
        and the id of the task holding the claim (nothing was enqueued)."""
        message, command, args = self._prepare(message, delay, (claim_key, claim_ttl_ms))
        holder = self._dispatch(command)(message.queue_name, *args)
        if holder != 1:
            return message, holder.decode() if isinstance(holder, bytes) else str(holder)
        self.emit_after("enqueue", message, delay)
        return message, None

    def enqueue_once(self, message: Message[Any], claim_key: str, claim_ttl_ms: int) -> Message[Any] | None:
        """Enqueue ``message`` now unless ``claim_key`` is already claimed (then return None)."""
        enqueued, holder = self.enqueue_claimed(message, claim_key, claim_ttl_ms)
        return None if holder is not None else enqueued

    async def enqueue_async(
        self, message: Message[Any], *, delay: int | None = None, claim: tuple[str, int] | None = None
    ) -> tuple[Message[Any], str | None]:
        """:meth:`enqueue_claimed` (or a plain enqueue without ``claim``) on an asyncio Redis connection, for the
        API: the event loop serves other requests while Redis answers."""
        if self._batcher is None:
            script = self._async_script()
            if script is None:  # a connection with no asyncio twin (Sentinel): the blocking path, off the loop
                if claim is None:
                    return await asyncio.to_thread(self.enqueue, message, delay=delay), None
                return await asyncio.to_thread(self.enqueue_claimed, message, *claim, delay=delay)
            self._batcher = _Batcher(script, [self.namespace])
        message, command, args = self._prepare(message, delay, claim)
        holder = await self._batcher.call(self._header(command, message.queue_name, args))
        if holder != 1:
            return message, holder.decode() if isinstance(holder, bytes) else str(holder)
        self.emit_after("enqueue", message, delay)
        return message, None

    def _prepare(
        self, message: Message[Any], delay: int | None, claim: tuple[str, int] | None
    ) -> tuple[Message[Any], str, list[Any]]:
        """The message as it will be stored, and the script command and arguments that store it."""
        message = message.copy(options={"redis_message_id": str(uuid4())})
        message.options.pop("eta", None)
        self.emit_before("enqueue", message, delay)
        rid = message.options["redis_message_id"]
        claim_args = [claim[0], claim[1]] if claim else []
        if delay is None or delay <= 0:
            message.options.pop("jobkit_due", None)
            return message, "enqueue", [rid, message.encode(), message.message_id, *claim_args]
        kind = "retry" if message.options.get("jobkit_retry") else "scheduled"
        # Rounded up: a task never becomes due before the time asked for.
        due = math.ceil(time.time() * 1000 + delay)
        message.options["jobkit_due"] = due  # pending (for latency) from then on
        return message, "schedule", [rid, message.encode(), message.message_id, due, kind, *claim_args]

    def _async_script(self) -> Any:
        """The dispatch script on an asyncio client with the same connection settings (made on first use, for the
        one event loop of the API process)."""
        if self._async is None:
            from redis.asyncio import ConnectionPool, Redis
            from redis.asyncio import connection as aio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            pool = self.client.connection_pool
            kind = {
                redis.UnixDomainSocketConnection: aio.UnixDomainSocketConnection,
                redis.SSLConnection: aio.SSLConnection,
                redis.Connection: aio.Connection,
            }.get(pool.connection_class)
            if kind is None:  # e.g. a Sentinel-managed pool: no asyncio twin here
                return None
            kwargs = {k: v for k, v in pool.connection_kwargs.items() if k in _ASYNC_CONNECTION_KEYS}
            client = Redis(connection_pool=ConnectionPool(connection_class=kind, retry=Retry(NoBackoff(), 1), **kwargs))
            self._async = client.register_script(_SCRIPT)
        return self._async

    def flush(self, queue_name: str) -> None:
        """Drop every task of a queue, whatever its state (tests and `delete` tooling)."""
        base = f"{self.namespace}:{queue_name}"
        suffixes = ("", ".msgs", ".ids", ".active", ".scheduled", ".retry", ".XQ", ".XQ.msgs", ".done", ".done.msgs")
        self.client.delete(*(base + suffix for suffix in suffixes))

    def flush_all(self) -> None:
        for queue_name in self.queues:
            self.flush(queue_name)

    # -- start markers ------------------------------------------------------------------------------------------------
    def mark_started(self, message: Any) -> None:
        """Record that a worker thread began ``message``; the marker rides along with the next call to Redis."""
        self.started.append((message.queue_name, message.options["redis_message_id"], time.monotonic()))

    def _take_started(self) -> str:
        lines = []
        while self.started:
            try:
                queue_name, rid, _ = self.started.popleft()
            except IndexError:
                break
            lines.append(f"{queue_name}\t{rid}")
        return "\n".join(lines)

    def oldest_unsent_start(self) -> float | None:
        try:
            return self.started[0][2]
        except IndexError:
            return None

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

    def _header(self, command: str, queue_name: str, args: Any, maintenance: bool = False) -> list[Any]:
        return [
            command,
            current_millis(),
            queue_name,
            self.broker_id,
            self.heartbeat_timeout,
            self.dead_message_ttl,
            self.dead_max,
            "1" if maintenance else "0",
            # Start markers ride along with a worker's own calls only (an enqueue's fast path never reads them).
            self._take_started() if self.started and command not in _CLIENT_COMMANDS else "",
            *args,
        ]

    def _dispatch(self, command: str) -> Any:
        dispatch = self.scripts["dispatch"]
        keys = [self.namespace]

        def do_dispatch(queue_name: str, *args: Any, maintenance: bool = False) -> Any:
            return dispatch(keys=keys, args=self._header(command, queue_name, args, maintenance))

        return do_dispatch


class _Batcher:
    """Sends the script calls that arrive in one turn of the event loop as one pipeline: under load, one write and
    one read serve many API requests instead of one each."""

    def __init__(self, script: Any, keys: list[str]) -> None:
        self.script = script
        self.keys = keys
        self.waiting: list[tuple[list[Any], asyncio.Future[Any]]] = []

    async def call(self, args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.waiting.append((args, future))
        if len(self.waiting) == 1:
            loop.call_soon(lambda: asyncio.ensure_future(self._flush()))
        return await future

    async def _flush(self) -> None:
        batch, self.waiting = self.waiting, []
        try:
            pipe = self.script.registered_client.pipeline(transaction=False)
            for args, _ in batch:
                await self.script(keys=self.keys, args=args, client=pipe)
            results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the connection failed: every call in the batch sees it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)


class _JobkitConsumer(Consumer):
    """Fetches from one queue: prefetch-bounded, heartbeating while busy, sleeping until the next due task, and
    handing prefetched messages back as soon as it learns that its queue is paused."""

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
        self.paused = False
        # Set when a worker thread finishes one of this queue's messages: a full consumer refills at once.
        self.slot_freed = threading.Event()
        self._fetch = broker._dispatch("fetch")
        self._ack = broker._dispatch("ack")
        self._nack = broker._dispatch("nack")
        self._heartbeat = broker._dispatch("heartbeat")

    @property
    def outstanding_message_count(self) -> int:
        return len(self.queued_message_ids) + len(self.message_cache)

    def ack(self, message: MessageProxy) -> None:
        options = message.options
        try:
            if options.get("jobkit_deferred"):
                # Issue 8: a rate or concurrency limit deferred this attempt (re-enqueued with a delay, never run):
                # neither counted as processed nor recorded as completed.
                self._ack(self.queue_name, options["redis_message_id"], message.message_id, "deferred", 0, "")
            elif message._exception is not None:  # this attempt failed and a retry is already enqueued
                self._ack(self.queue_name, options["redis_message_id"], message.message_id, "retry", 0, "")
            else:
                retention = self._retention(message)
                completed = b""
                if retention > 0:
                    options["completed_at"] = current_millis()
                    completed = message.encode()
                unique = options.get("jobkit_unique", "")  # its lock ends in the same call
                self._ack(
                    self.queue_name, options["redis_message_id"], message.message_id, "ok", retention, completed, unique
                )
            self.last_call = time.monotonic()
        except redis.ConnectionError as e:
            raise ConnectionClosed(e) from None
        finally:
            self.queued_message_ids.discard(message.message_id)
            self.slot_freed.set()

    def _retention(self, message: MessageProxy) -> int:
        try:
            return int(self.broker.get_actor(message.actor_name).options.get("retention", DEFAULT_RETENTION_MS))
        except Exception:  # an actor this process does not know: keep the default
            return DEFAULT_RETENTION_MS

    def nack(self, message: MessageProxy) -> None:
        try:
            options = message.options
            unique = options.get("jobkit_unique", "")  # an archived task's lock ends in the same call
            self._nack(self.queue_name, options["redis_message_id"], message.encode(), unique, message.message_id)
            self.last_call = time.monotonic()
        except redis.ConnectionError as e:
            raise ConnectionClosed(e) from None
        finally:
            self.queued_message_ids.discard(message.message_id)
            self.slot_freed.set()

    def requeue(self, messages: Any) -> None:
        rids = [message.options["redis_message_id"] for message in messages]
        if rids:
            self.broker.do_requeue(self.queue_name, *rids)

    def _set_paused(self, paused: bool) -> None:
        if paused and not self.paused and self.broker.arbiter is not None:
            # Prefetched messages of a paused queue must not start: hand them back to the head of the queue.
            taken = self.broker.arbiter.take_all(self.queue_name)
            if taken:
                self.requeue(taken)
                for message in taken:
                    self.queued_message_ids.discard(message.message_id)
        self.paused = paused

    def __next__(self) -> MessageProxy | None:
        try:
            if self.message_cache:
                self.misses = 0
                message = Message.decode(self.message_cache.pop(0))
                self.queued_message_ids.add(message.message_id)
                return MessageProxy(message)
            now = time.monotonic()
            self.slot_freed.clear()  # before counting: a slot freed after this point wakes the wait below
            wanted = self.prefetch - self.outstanding_message_count
            if wanted <= 0:
                # Every slot is taken: keep saying we are alive, learn about a pause within BUSY_POLL_S, and send
                # start markers that found no other call to ride along with.
                oldest = self.broker.oldest_unsent_start()
                if now - self.last_call >= BUSY_POLL_S or (oldest is not None and now - oldest > START_FLUSH_S):
                    self._set_paused(bool(self._heartbeat(self.queue_name)))
                    self.last_call = now
                self.slot_freed.wait(START_FLUSH_S if oldest is not None else BUSY_POLL_S)
                return None
            maintenance = now - self.last_maintenance >= MAINTENANCE_INTERVAL_S
            if maintenance:
                self.last_maintenance = now
            next_due, paused, *data = self._fetch(self.queue_name, wanted, maintenance=maintenance)
            self.last_call = now
            self._set_paused(bool(paused))
            if self.broker.arbiter is not None:
                self.broker.arbiter.note_fetch(self.queue_name, bool(data))
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
