"""The Redis broker jobkit runs on: Dramatiq's ``RedisBroker`` with jobkit's ``broker`` Lua script.

What changes against the stock broker, each inside the one round trip Dramatiq already makes per message:

- delayed tasks and retries wait in Redis sorted sets (``<queue>.scheduled`` / ``<queue>.retry``), not in worker
  memory; every fetch forwards the due ones, so a delay can be any length and survives worker restarts. A stock
  Dramatiq producer's delayed messages (``<queue>.DQ``, which a stock worker would hold in memory until their
  ``eta``) are moved into the scheduled set by the same fetch, so a mixed fleet loses none of them;
- an enqueue can carry claims (a unique task's lock, a scheduler's fire claim) taken in the same step;
- the dead-letter set keeps the message as its final attempt ended (with that attempt's error), trimmed by age and
  size;
- orphan recovery (tasks held by a worker whose heartbeat stopped) runs on a timer, and a worker sends heartbeats
  even while all its threads are busy, so a long task never makes a live worker look dead; a dead stock Dramatiq
  worker's messages (in Dramatiq's per-worker ack sets, its delay queues' too) are recovered as well;
- a worker that is stopped hard hands everything it held straight back (``release``);
- an idle consumer blocks on its queue's wake-up list (``BLPOP``, bounded by ``IDLE_WAIT_MAX_S``) instead of polling:
  an enqueue onto an empty queue, a delayed task stored, a resume, or a fetch that leaves work behind pushes a token,
  and the fetch is pipelined behind the BLPOP (Redis runs it the moment the BLPOP is answered), so the first task
  after a quiet spell is on its way within one round trip;
- acks are group-committed per consumer: the acks that finish while one ack call is out go together in the next,
  and the counters, the id index and the start markers of a batch are written once per call, not once per task.
  An ack is never sent before its handler returned, so a worker that dies in between still has the task run again.

Everything the broker needs is passed to its constructor: the Redis client, the key layout, and (in a worker) the
:class:`~jobkit.engine.work_queue.WorkQueue` that orders work across queues.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import math
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import dramatiq
import redis
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message
from dramatiq.middleware import Middleware, MiddlewareError
from redis.exceptions import NoScriptError

from jobkit.config.model import DEFAULT_RETENTION, DEFAULT_RETENTION_MAX, REPLICATION_TIMEOUT
from jobkit.engine.messages import UNIQUE_OPTION, Claim, Outgoing, Refused, encode_message
from jobkit.engine.running import CANCELED_OPTION
from jobkit.engine.work_queue import WorkQueue
from jobkit.errors import NotReplicated
from jobkit.store.connection import async_twin, exchange
from jobkit.store.keys import Keys
from jobkit.store.scripts import Scripts, script_source

__all__ = ["DEAD_MAX", "DEAD_TTL_MS", "HEARTBEAT_TIMEOUT_MS", "JobkitBroker", "JobkitConsumer", "new_rid"]

#: A worker whose last heartbeat is older than this is dead; its unfinished tasks run again elsewhere.
HEARTBEAT_TIMEOUT_MS = 15_000
#: Archived (dead) tasks are kept this long and at most this many per queue (Asynq's defaults).
DEAD_TTL_MS = 90 * 86_400_000
DEAD_MAX = 10_000
#: Commands a client sends (dispatch, scheduler); everything else comes from a worker.
_CLIENT_COMMANDS = frozenset({"enqueue", "schedule", "enqueue_many"})
#: How many times a task waited for a worker that knows it (message option).
UNKNOWN_WAITS_OPTION = "jobkit_unknown_waits"
#: How long a worker trusts what it read about the task types live workers serve.
_SERVED_TTL_S = 5.0
#: Messages per script call of send_many (each call is atomic: Redis serves no one else meanwhile), and script calls
#: per pipeline round trip.
SEND_MANY_BATCH = 250
SEND_MANY_CALLS_PER_TRIP = 8
#: How often each consumer runs maintenance (orphan recovery, dead-letter trimming) along with a fetch.
MAINTENANCE_INTERVAL_S = 5.0
#: The longest an idle consumer blocks on its queue's wake-up list (BLPOP) between fetches: an enqueue, a delayed
#: task stored, a resume or a due time wakes it earlier. Only a stock Dramatiq producer's messages (which push no
#: token) wait for it; stock Dramatiq workers poll up to their worker timeout (1 s). Idle, a consumer makes two calls
#: to Redis per interval (BLPOP and a fetch), fewer than the five fetches a second of the 200 ms poll it replaced.
IDLE_WAIT_MAX_S = 0.5
#: How late Redis may time a BLPOP out (its timeouts are checked on a 10 Hz clock), plus a margin.
BLPOP_SLACK_S = 0.11
#: At most how often a consumer's calls carry its heartbeat (timeout: HEARTBEAT_TIMEOUT_MS); see beat_interval.
BEAT_INTERVAL_S = 1.0
#: An idle consumer pipelines its fetch behind its wait only when its socket timeout leaves at least this much after
#: the wait (workers: 5 s): see JobkitConsumer.__next__.
PIPELINED_WAIT_MARGIN_S = 2.0
#: How often a consumer whose slots are all taken still talks to Redis (heartbeat, pause flag).
BUSY_POLL_S = 0.25
#: At most this many acks go in one script call (Redis serves no one else while it runs).
ACK_BATCH_MAX = 200
#: A start marker waits at most this long for another call to ride along with.
START_FLUSH_S = 0.05
#: The calls a start marker rides along with as soon as it is there; a fetch takes only markers older than
#: START_FLUSH_S. A short task's marker then goes with its own ack, which drops it (no write for a task that is over),
#: instead of costing the fetch that follows its start two commands.
_MARKER_CARRIERS = frozenset({"ack", "nack", "heartbeat"})
#: What a waiting ack's thread finds instead of an outcome when it is its turn to send the next call.
_LEAD: Any = object()
_new_gate = threading.Lock
_DEFAULT_RETENTION_MS = int(DEFAULT_RETENTION.total_seconds() * 1000)
REPLICATION_TIMEOUT_MS = int(REPLICATION_TIMEOUT.total_seconds() * 1000)


class JobkitBroker(RedisBroker):
    """Dramatiq's Redis broker with jobkit's keys and script; ``dramatiq`` CLI and middleware work unchanged."""

    def __init__(
        self,
        *,
        client: redis.Redis,
        keys: Keys,
        middleware: list[Middleware] | None = None,
        work_queue: WorkQueue | None = None,
        heartbeat_timeout: int = HEARTBEAT_TIMEOUT_MS,
        maintenance_interval: float = MAINTENANCE_INTERVAL_S,
        dead_message_ttl: int = DEAD_TTL_MS,
        dead_max: int = DEAD_MAX,
    ) -> None:
        self._hooks: dict[str, list[Any]] = {}  # before super(): it adds the middleware
        #: Start markers not sent yet: (queue, rid, when); they ride along with the next call to Redis.
        self.started: deque[tuple[str, str, float]] = deque()
        self._batcher: _Batcher | None = None
        self._no_async = False
        super().__init__(
            client=client,
            namespace=keys.namespace,
            middleware=middleware,
            heartbeat_timeout=heartbeat_timeout,
            dead_message_ttl=dead_message_ttl,
        )
        self.keys = keys
        self.lua = Scripts(client, keys)
        #: Where a worker's threads take work from; a consumer hands a paused queue's prefetched messages back from it.
        self.work_queue = work_queue
        #: Seconds between a consumer's maintenance passes (orphan recovery, trimming), riding along with a fetch.
        self.maintenance_interval = maintenance_interval
        self.dead_max = dead_max
        self._served: tuple[float, set[str]] = (0.0, set())

    # Dramatiq calls every middleware's hook for every signal, most of them the base class's no-op. jobkit runs a
    # dozen middleware, so per message it calls only the hooks a middleware defines (same order, same errors).
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
    def consumer_class(self) -> type[JobkitConsumer]:
        return JobkitConsumer

    def declare_queue(self, queue_name: str) -> None:
        # No ``<queue>.DQ`` delay queue consumer: delayed messages live in Redis sorted sets instead of worker memory
        # (a stock producer's ``.DQ`` messages are moved there by the fetch, see broker.lua).
        if queue_name not in self.queues:
            self.emit_before("declare_queue", queue_name)
            self.queues.add(queue_name)
            self.emit_after("declare_queue", queue_name)

    # -- enqueueing ------------------------------------------------------------------------------------------------
    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        """Enqueue ``message`` now, or after ``delay`` milliseconds (any length: it waits in Redis). Dramatiq's own
        path (``actor.send``), and re-enqueues of a message that exists already (retries, deferrals)."""
        sent, refused = self.send(Outgoing(message, delay))
        assert refused is None  # no claims, nothing to refuse
        return sent

    def send(self, outgoing: Outgoing) -> tuple[Message[Any], Refused | None]:
        """Store ``outgoing`` unless one of its claims is held: returns the message as stored, and None or the
        claim that refused it (then nothing was enqueued). A replicated send returns only once a replica has it,
        and raises :class:`~jobkit.errors.NotReplicated` when none acknowledges it in time."""
        message, command, args = self._prepare(outgoing)
        if not outgoing.replicated:
            result = self._call(command, message.queue_name, args)
        else:
            # WAIT counts the replicas that have every write this connection made: the script's, in one pipeline.
            pipe = self.client.pipeline(transaction=False)
            self.lua.call("broker", *self._header(command, message.queue_name, args), client=pipe)
            pipe.execute_command("WAIT", 1, REPLICATION_TIMEOUT_MS)
            result, replicas = pipe.execute()
            if int(replicas) < 1 and result == 1:
                raise NotReplicated(_not_replicated(message))
        return self._sent(outgoing, message, result)

    async def send_async(self, outgoing: Outgoing) -> tuple[Message[Any], Refused | None]:
        """:meth:`send` on an asyncio Redis connection, for the API: the event loop serves other requests while
        Redis answers, and calls of one loop turn share one pipeline."""
        if self._batcher is None and not self._no_async:
            twin = async_twin(self.client)
            if twin is None:
                self._no_async = True  # e.g. Sentinel: no asyncio twin; the blocking path, off the loop
            else:
                self._batcher = _Batcher(twin.register_script(script_source("broker")), [self.namespace])
        if self._batcher is None:
            return await asyncio.to_thread(self.send, outgoing)
        message, command, args = self._prepare(outgoing)
        result, replicas = await self._batcher.call(
            self._header(command, message.queue_name, args), outgoing.replicated
        )
        if outgoing.replicated and replicas < 1 and result == 1:
            raise NotReplicated(_not_replicated(message))
        return self._sent(outgoing, message, result)

    def send_many(self, outgoings: list[Outgoing]) -> list[tuple[Message[Any], Refused | None]]:
        """:meth:`send` for many messages of one queue, in batches of :data:`SEND_MANY_BATCH` per script call and
        several calls per round trip. Each message's claims are taken as for :meth:`send`: one refused message is
        not enqueued, the others are."""
        if not outgoings:
            return []
        queue_name = outgoings[0].message.queue_name
        prepared = []
        for outgoing in outgoings:
            if outgoing.message.queue_name != queue_name:
                raise ValueError("send_many takes the messages of one queue")
            prepared.append(self._prepare(outgoing))
        replies: list[Any] = []
        calls = [prepared[start : start + SEND_MANY_BATCH] for start in range(0, len(prepared), SEND_MANY_BATCH)]
        for trip in range(0, len(calls), SEND_MANY_CALLS_PER_TRIP):
            script_calls: list[list[Any]] = []
            for call in calls[trip : trip + SEND_MANY_CALLS_PER_TRIP]:
                args: list[Any] = []
                for _message, command, command_args in call:
                    if len(command_args) == (3 if command == "enqueue" else 5):
                        command_args = [*command_args, 0]  # no claims: say so, the next message follows
                    args += [command, len(command_args), *command_args]
                script_calls.append(self._header("enqueue_many", queue_name, args))
            for reply in self.lua.call_pipelined("broker", script_calls):
                replies.extend(reply)
        sent = []
        for outgoing, (message, _command, _args), reply in zip(outgoings, prepared, replies, strict=True):
            if reply != 1:
                index, _, holder = (reply.decode() if isinstance(reply, bytes) else str(reply)).partition("\t")
                reply = [int(index), holder]
            sent.append(self._sent(outgoing, message, reply))
        return sent

    def _prepare(self, outgoing: Outgoing) -> tuple[Message[Any], str, list[Any]]:
        """The message as it will be stored, and the script command and arguments that store it."""
        if outgoing.fresh:
            message = outgoing.message
            message.options["redis_message_id"] = new_rid()
        else:
            message = outgoing.message.copy(options={"redis_message_id": new_rid()})
        message.options.pop("eta", None)  # Dramatiq's in-memory delay: jobkit's delayed messages wait in Redis
        message.options.pop("jobkit_retry", None)  # what jobkit 0.2 marked retries with
        delay = outgoing.delay_ms
        self.emit_before("enqueue", message, delay)
        rid = message.options["redis_message_id"]
        claims = _claim_args(outgoing.claims)
        if delay is None or delay <= 0:
            message.options.pop("jobkit_due", None)
            return message, "enqueue", [rid, encode_message(message, outgoing.fresh), message.message_id, *claims]
        kind = "retry" if outgoing.retry else "scheduled"
        # Rounded up: a task never becomes due before the time asked for.
        due = math.ceil(time.time() * 1000 + delay)
        message.options["jobkit_due"] = due  # pending (for latency) from then on
        data = encode_message(message, outgoing.fresh)
        return message, "schedule", [rid, data, message.message_id, due, kind, *claims]

    def _sent(self, outgoing: Outgoing, message: Message[Any], result: Any) -> tuple[Message[Any], Refused | None]:
        if result == 1:
            self.emit_after("enqueue", message, outgoing.delay_ms)
            return message, None
        index, holder = result
        holder = holder.decode() if isinstance(holder, bytes) else str(holder)
        return message, Refused(outgoing.claims[int(index) - 1], holder)

    # -- operations ------------------------------------------------------------------------------------------------
    def served_elsewhere(self, task: str) -> bool:
        """Whether a live worker says it serves ``task`` (the ``tasks`` of its ``K.workers`` entry), read at most
        every few seconds."""
        read_at, served = self._served
        if time.monotonic() - read_at > _SERVED_TTL_S:
            served = set()
            alive_since = current_millis() - self.heartbeat_timeout
            live = {_text(worker) for worker in self.client.zrangebyscore(self.keys.heartbeats, alive_since, "+inf")}
            for worker, raw in self.client.hgetall(self.keys.workers).items():
                if _text(worker) in live and _text(worker) != self.broker_id:
                    served.update(json.loads(raw).get("tasks", ()))
            self._served = (time.monotonic(), served)
        return task in served

    def flush(self, queue_name: str) -> None:
        """Drop every task of a queue, whatever its state (tests and `delete` tooling)."""
        self.client.delete(*self.keys.queue_keys(queue_name))

    def flush_all(self) -> None:
        for queue_name in self.queues:
            self.flush(queue_name)

    def mark_started(self, queue_name: str, rid: str) -> None:
        """Record that a worker thread began a message; the marker rides along with the next call to Redis."""
        self.started.append((queue_name, rid, time.monotonic()))

    def _take_started(self) -> str:
        lines = []
        while self.started:
            try:
                queue_name, rid, _ = self.started.popleft()
            except IndexError:
                break
            lines.append(f"{queue_name}\t{rid}")
        return "\n".join(lines)

    def _markers_ride(self, command: str) -> bool:
        if command in _MARKER_CARRIERS:
            return True
        oldest = self.oldest_unsent_start()
        return oldest is not None and time.monotonic() - oldest >= START_FLUSH_S

    def oldest_unsent_start(self) -> float | None:
        try:
            return self.started[0][2]
        except IndexError:
            return None

    def release(self) -> int:
        """Hand back every task this process holds (running or prefetched) and stop looking alive."""
        return int(self._call("release", "", []))

    def dead_letters(self, queue_name: str) -> list[Message[Any]]:
        """The archived messages of a queue, oldest first (each as its final attempt ended)."""
        found = self.lua.call("queues", "list", current_millis(), queue_name, "archived", 0, -1)
        return [Message.decode(found[i]) for i in range(len(found) - 1, 2, -3) if found[i]]

    # -- the script ------------------------------------------------------------------------------------------------
    def _header(
        self,
        command: str,
        queue_name: str,
        args: list[Any],
        maintenance: bool = False,
        beat: bool = False,
        markers: bool = True,
    ) -> list[Any]:
        if command in _CLIENT_COMMANDS:  # an enqueue's short path reads only these (see broker.lua)
            return [command, "", queue_name, *args]
        return [
            command,
            current_millis(),
            queue_name,
            self.broker_id,
            self.heartbeat_timeout,
            self.dead_message_ttl,
            self.dead_max,
            # Maintenance: the queues this worker knows, where a dead stock Dramatiq worker's acks are looked for.
            ("".join("\t" + name for name in sorted(self.queues)) or "\t") if maintenance else "",
            # Start markers ride along with a worker's own calls only.
            self._take_started() if markers and self.started and self._markers_ride(command) else "",
            "1" if beat or maintenance else "",  # a maintenance pass beats before it looks for dead workers
            *args,
        ]

    def _call(
        self, command: str, queue_name: str, args: list[Any], maintenance: bool = False, beat: bool = False
    ) -> Any:
        return self.lua.call("broker", *self._header(command, queue_name, args, maintenance, beat))

    @property
    def beat_interval(self) -> float:
        """Seconds between a consumer's heartbeats (each rides along with one of its calls): a second, or a fifth of
        the timeout when that is shorter."""
        return min(BEAT_INTERVAL_S, float(self.heartbeat_timeout) / 5000)

    def _dispatch(self, command: str) -> Any:
        # Dramatiq's ``do_<command>`` helpers (``do_requeue``) come through here.
        def do_dispatch(queue_name: str, *args: Any, maintenance: bool = False) -> Any:
            return self._call(command, queue_name, list(args), maintenance)

        return do_dispatch


def new_rid() -> str:
    """A fresh rid (one enqueue of a message): 120 random bits in 20 URL-safe characters. Dramatiq writes a uuid4
    (36); a rid is stored three times per pending task (the queue list, the message store's field, the id index), and
    20 characters is what Redis's allocator fits in its smallest string, so each pending task costs 64 bytes less."""
    return base64.urlsafe_b64encode(os.urandom(15)).decode()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _not_replicated(message: Message[Any]) -> str:
    return (
        f"{message.actor_name} {message.message_id}: no replica acknowledged the task within "
        f"{REPLICATION_TIMEOUT_MS} ms (durability: replicated); the primary has it and runs it unless it fails over "
        "now, so dispatch again only if a second run is acceptable"
    )


#: Options a completed task's record leaves out: the rid (the record is keyed by message id), and what only a retry
#: reads (Dramatiq's traceback of the last failure, often kilobytes; its requeue time). ``last_error`` stays.
_NOT_KEPT_WHEN_COMPLETED = ("redis_message_id", "traceback", "requeue_timestamp")


def _completed_record(message: MessageProxy) -> bytes:
    """What a completed task keeps for inspection: payload, result, timings and last error, without the options only
    a live or retried message needs."""
    inner: Message[Any] = message._message  # the proxy forwards every attribute read through __getattr__
    kept = {key: value for key, value in inner.options.items() if key not in _NOT_KEPT_WHEN_COMPLETED}
    # Message.encode's fields, without building a second Message (asdict twice and a dataclass init per task).
    return dramatiq.get_encoder().encode(
        {
            "queue_name": inner.queue_name,
            "actor_name": inner.actor_name,
            "args": inner.args,
            "kwargs": inner.kwargs,
            "options": kept,
            "message_id": inner.message_id,
            "message_timestamp": inner.message_timestamp,
        }
    )


def _claim_args(claims: tuple[Claim, ...]) -> list[Any]:
    if not claims:
        return []
    args: list[Any] = [len(claims)]
    for claim in claims:
        args += [claim.key, claim.ttl_ms]
    return args


class _Batcher:
    """Sends the script calls that arrive in one turn of the event loop as one pipeline: under load, one write and
    one read serve many API requests instead of one each."""

    def __init__(self, script: Any, keys: list[str]) -> None:
        self.script = script
        self.keys = keys
        self.waiting: list[tuple[list[Any], asyncio.Future[Any]]] = []
        self.replicated = False

    async def call(self, args: list[Any], replicated: bool = False) -> tuple[Any, int]:
        """The script's result, and how many replicas acknowledged the batch (0 unless ``replicated`` asked)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.waiting.append((args, future))
        self.replicated = self.replicated or replicated
        if len(self.waiting) == 1:
            loop.call_soon(lambda: asyncio.ensure_future(self._flush()))
        answer: tuple[Any, int] = await future
        return answer

    async def _run(self, calls: list[list[Any]], replicated: bool) -> tuple[list[Any], int]:
        """One write of EVALSHA calls (and a WAIT after them when ``replicated``): the results, and how many
        replicas acknowledged. EVALSHA rather than the Script object, which asks SCRIPT EXISTS first."""
        head = ("EVALSHA", self.script.sha, len(self.keys), *self.keys)
        commands: list[tuple[Any, ...]] = [(*head, *args) for args in calls]
        if replicated:  # one WAIT after the batch covers every write before it on this connection
            commands.append(("WAIT", 1, REPLICATION_TIMEOUT_MS))
        results = await exchange(self.script.registered_client, commands)
        replicas = 0
        if replicated:
            acknowledged = results.pop()
            replicas = acknowledged if isinstance(acknowledged, int) else 0
        return results, replicas

    async def _flush(self) -> None:
        batch, self.waiting = self.waiting, []
        replicated, self.replicated = self.replicated, False
        try:
            results, replicas = await self._run([args for args, _ in batch], replicated)
            refused = [index for index, result in enumerate(results) if isinstance(result, NoScriptError)]
            if refused:  # the first call, or Redis lost its script cache (a restart): load it, run those again
                await self.script.registered_client.script_load(self.script.script)
                again, replicas = await self._run([batch[index][0] for index in refused], replicated)
                for index, result in zip(refused, again, strict=True):
                    results[index] = result
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
                    future.set_result((result, replicas))


class JobkitConsumer(Consumer):
    """Fetches from one queue: prefetch-bounded, heartbeating while busy, sleeping until the next due task, and
    handing prefetched messages back as soon as it learns that its queue is paused."""

    def __init__(self, broker: JobkitBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        self.broker = broker
        self.queue_name = queue_name
        self.prefetch = prefetch
        self.timeout = timeout
        #: How many messages the last fetch asked for, and whether it got them all (see __next__'s refill).
        self._asked = 0
        self._last_fetch_full = False
        self.message_cache: list[bytes] = []
        self.queued_message_ids: set[str] = set()
        self.last_call = 0.0
        self.last_maintenance = 0.0
        self._beat_at = -math.inf  # the first call beats (and puts this queue in the worker's index)
        #: The next due time an empty fetch pipelined behind a wait brought back (None: the next look is a fetch).
        self._idle_due: int | None = None
        self.paused = False
        self.wakeup = broker.keys.wakeup(queue_name)
        #: Group commit of acks: those waiting (rid -> the script's arguments and the gate its thread waits on),
        #: whether a call is out (a leader exists), and how the call that carried another thread's ack ended (None:
        #: in Redis). One lock guards the three.
        self._acks: dict[str, tuple[list[Any], Any]] = {}
        self._ack_lock = threading.Lock()
        self._ack_sending = False
        self._ack_outcomes: dict[str, BaseException | None] = {}
        # Set when a worker thread finishes one of this queue's messages: a full consumer refills at once.
        self.slot_freed = threading.Event()
        self._cap: tuple[int, int] = (-1, DEFAULT_RETENTION_MAX)  # (actors counted, the queue's cap)

    def _beat(self) -> bool:
        """Whether this call carries the heartbeat: the first call does, then one call a beat interval (any
        thread's: the consumer's fetches, the handlers' acks)."""
        now = time.monotonic()
        beat = now - self._beat_at >= self.broker.beat_interval
        if beat:
            self._beat_at = now
        return beat

    def _call(self, command: str, *args: Any, maintenance: bool = False) -> Any:
        beat = self._beat()
        try:
            return self.broker._call(command, self.queue_name, list(args), maintenance, beat)
        except BaseException:
            if beat:
                self._beat_at = -math.inf  # a call that failed is retried with its beat by the next one
            raise

    def _wait_then_fetch(self, wait: float) -> list[Any] | None:
        """Block on the wake-up list for up to ``wait`` seconds, and fetch as soon as it returns, in one round trip:
        Redis runs the fetch queued behind the BLPOP the moment the BLPOP is answered (a token, or the timeout), so
        a task enqueued onto an idle queue is on its way to a thread one round trip sooner. Returns the fetch's reply,
        or None when there was none to take (the next fetch looks again)."""
        wanted = self._asked = self.prefetch - self.outstanding_message_count
        beat = self._beat()
        pipe = self.broker.client.pipeline(transaction=False)
        pipe.blpop([self.wakeup], timeout=wait)
        # No start markers in it: a marker taken now would be lost with a failed call (markers wait for the direct
        # fetch that follows START_FLUSH_S, or for an ack).
        header = self.broker._header("fetch", self.queue_name, [max(wanted, 0)], False, beat, markers=False)
        pipe.evalsha(self.broker.lua.script("broker").sha, 1, self.broker.keys.namespace, *header)
        try:
            # A timeout here is a Redis that stalled for PIPELINED_WAIT_MARGIN_S or more past the wait: raised, as
            # for any other call of the consumer.
            _, reply = pipe.execute(raise_on_error=False)
            if isinstance(reply, Exception):
                raise reply
        except BaseException as exc:
            if beat:
                self._beat_at = -math.inf  # the next call beats instead
            if isinstance(exc, NoScriptError):  # Redis lost its scripts (a restart): the next fetch loads it
                return None
            raise
        return list(reply)

    def _took(self, reply: list[Any], now: float) -> tuple[int, bool]:
        """A fetch's reply: the next due time (ms, -1 for none), and whether it brought messages (then in
        ``message_cache``)."""
        next_due, paused, *data = reply
        self.last_call = now
        self._set_paused(bool(paused))
        if self.broker.work_queue is not None:
            self.broker.work_queue.note_fetch(self.queue_name, bool(data))
        self._last_fetch_full = len(data) >= self._asked
        if data:
            self.message_cache = [item for item in data if item is not None]
        return int(next_due), bool(data)

    @property
    def outstanding_message_count(self) -> int:
        return len(self.queued_message_ids) + len(self.message_cache)

    def ack(self, message: MessageProxy) -> None:
        options = message.options
        rid = options["redis_message_id"]
        if getattr(message, "jobkit_deferred", False):
            # A rate or concurrency limit deferred this attempt (re-enqueued with a delay, never run): neither
            # counted as processed nor recorded as completed.
            args: list[Any] = [rid, message.message_id, "deferred", 0, "", "", 0, ""]
        elif message._exception is not None:  # this attempt failed and a retry is already enqueued
            args = [rid, message.message_id, "retry", 0, "", "", 0, ""]
        else:
            retention, most = self._retention(message)
            completed, at = b"", time.time() * 1000
            if retention > 0 and most > 0:
                options["completed_at"] = int(at)
                completed = _completed_record(message)
                most = self._queue_cap()
            unique = options.get(UNIQUE_OPTION, "")  # its lock ends in the same call
            # The record's score is when it is kept until to the microsecond, so "the newest" the count cap keeps
            # is exact even for completions within one millisecond; sent as text, which the script passes on as it
            # is (a number it passed would be formatted again by Redis).
            args = [rid, message.message_id, "ok", retention, completed, unique, most, f"{at + retention:.3f}"]
        # The slot is free before the ack is in Redis: an ack waiting for its batch must not hold the consumer's
        # refill back (weighted shares depend on every queue's buffer refilling promptly).
        self.queued_message_ids.discard(message.message_id)
        self.slot_freed.set()
        try:
            self._send_ack(rid, args)
            self.last_call = time.monotonic()
        except redis.ConnectionError as e:
            raise ConnectionClosed(e) from None

    def _send_ack(self, rid: str, args: list[Any]) -> None:
        """Group commit: while one ack call of this consumer is out, the acks that worker threads finish wait, and
        the next call carries them all; each thread returns once its own ack is in Redis (or raises if the call that
        carried it failed, and Dramatiq retries it), so an ack alone costs one call as before and under load one
        call carries many. Never sent before the handler returned: a worker killed meanwhile leaves the rids in its
        ack set and orphan recovery runs them again (at least once).

        Each waiting thread sleeps on a gate of its own (a held lock), released either when the call that carried
        its ack is over or when it is its turn to send the next call: a wake-up is never wasted on a thread whose
        ack is still waiting, as a shared condition's notify_all would be (measured: the condition was a sixth of a
        no-op task's worker CPU)."""
        with self._ack_lock:
            if self._ack_sending:
                gate = _new_gate()
                gate.acquire()
                self._acks[rid] = (args, gate)
            else:
                self._ack_sending = True
                self._acks[rid] = (args, None)
                gate = None
        if gate is not None:
            gate.acquire()  # released by the leader that sent this ack, or that handed this thread the next call
            with self._ack_lock:
                outcome = self._ack_outcomes.pop(rid, _LEAD)
            if outcome is not _LEAD:
                if isinstance(outcome, BaseException):
                    raise outcome
                return
        self._lead_ack_call(rid)

    def _lead_ack_call(self, rid: str) -> None:
        """Send this thread's ack with every other one waiting (up to ACK_BATCH_MAX), then wake their threads and
        hand the next call to the first ack still waiting."""
        with self._ack_lock:
            own_args, _ = self._acks.pop(rid)
            batch: list[tuple[str, list[Any], Any]] = []
            while self._acks and len(batch) < ACK_BATCH_MAX - 1:
                other = next(iter(self._acks))
                other_args, other_gate = self._acks.pop(other)
                batch.append((other, other_args, other_gate))
        failure: BaseException | None = None
        try:
            self._call("ack", *own_args, *itertools.chain.from_iterable(args for _, args, _ in batch))
        except BaseException as exc:
            failure = exc
        self._ack_call_over(batch, failure)
        if failure is not None:
            raise failure

    def _ack_call_over(self, batch: list[tuple[str, list[Any], Any]], failure: BaseException | None) -> None:
        """The call that carried ``batch`` (besides its sender's own ack) ended with ``failure`` (None: in Redis):
        wake those acks' threads, and hand the next call to the first ack still waiting, if any."""
        with self._ack_lock:
            for other, _, _ in batch:
                self._ack_outcomes[other] = failure
            successor = None
            if self._acks:  # still a leader: the first waiting ack's thread sends the next call
                successor = self._acks[next(iter(self._acks))][1]
            else:
                self._ack_sending = False
        for _, _, other_gate in batch:
            other_gate.release()
        if successor is not None:
            successor.release()

    def nack(self, message: MessageProxy) -> None:
        options = message.options
        with self._settling(message):
            unique = options.get(UNIQUE_OPTION, "")  # an archived task's lock ends in the same call
            if getattr(getattr(message, "jobkit_verdict", None), "kind", "") == "exhausted":
                # Dramatiq counted the final failure in ``retries`` too: the archived copy says so, for inspection.
                data = message.copy(options={"jobkit_exhausted": True}).encode()
            else:
                data = message.encode()
            state = "canceled" if options.get(CANCELED_OPTION) is not None else "archived"
            self._call("nack", options["redis_message_id"], data, unique, message.message_id, state)

    @contextmanager
    def _settling(self, message: MessageProxy) -> Iterator[None]:
        """Around an ack or a nack: a lost connection is Dramatiq's ConnectionClosed, and the slot is free after."""
        try:
            yield
            self.last_call = time.monotonic()
        except redis.ConnectionError as e:
            raise ConnectionClosed(e) from None
        finally:
            self.queued_message_ids.discard(message.message_id)
            self.slot_freed.set()

    def _retention(self, message: MessageProxy) -> tuple[int, int]:
        """How long (ms) and how many of the queue's completed tasks this task's completion keeps."""
        actor = self.broker.actors.get(message.actor_name)
        if actor is None:
            return _DEFAULT_RETENTION_MS, DEFAULT_RETENTION_MAX
        options = actor.options
        return int(options.get("retention", _DEFAULT_RETENTION_MS)), int(
            options.get("retention_max", DEFAULT_RETENTION_MAX)
        )

    def _queue_cap(self) -> int:
        """How many completed records this queue keeps: the largest ``retention.max`` of the jobs.yaml tasks on it
        (the default when none sets one). One cap per queue, since its records share one set: trimming to the
        smallest a task asks for would drop the records of the others."""
        counted, cap = self._cap
        actors = self.broker.actors
        if counted != len(actors):  # actors are declared as modules load; recount when one more is there
            caps = [
                int(actor.options["retention_max"])
                for actor in list(actors.values())
                if actor.queue_name == self.queue_name and "retention_max" in actor.options
            ]
            cap = max(caps, default=DEFAULT_RETENTION_MAX)
            self._cap = (len(actors), cap)
        return cap

    def requeue(self, messages: Any) -> None:
        rids = [message.options["redis_message_id"] for message in messages]
        if rids:
            self._call("requeue", *rids)

    def _from_delay_queue(self, message: Message[Any]) -> Message[Any]:
        """A stock producer's delayed message (``<queue>.DQ``, with an ``eta``), moved to this queue's scheduled set by
        the fetch and now due: it runs as a message of this queue, and its eta (Dramatiq's worker would hold it in
        memory until then) is spent."""
        options = {key: value for key, value in message.options.items() if key != "eta"}
        return Message(**{**message.asdict(), "queue_name": self.queue_name, "options": options})

    def _wait_for_a_worker_that_knows(self, message: Message[Any]) -> None:
        """A task this worker has no actor for (jobs.yaml gained it and this worker was not restarted, or another
        app's workers serve it): not run and not archived, as Dramatiq's worker would, but put in the retry set, in
        one step, with a ``last_error`` that says why. It comes back soon when a live worker serves it (another
        worker takes it then), else after a wait that grows to a minute; it runs once a worker that knows it starts.
        Not counted as processed or failed."""
        served = self.broker.served_elsewhere(message.actor_name)
        waits = int(message.options.get(UNKNOWN_WAITS_OPTION, 0)) + 1
        delay_ms = 1000 if served else min(60_000, 2000 * 2 ** min(waits - 1, 5))
        error = (
            f"this worker has no task {message.actor_name!r}; a worker that serves it will take it"
            if served
            else f"no worker knows task {message.actor_name!r} yet — restart workers after editing jobs.yaml"
        )
        rid = message.options["redis_message_id"]
        waiting = message.copy(
            options={
                "last_error": error, "last_failed_at": current_millis(), UNKNOWN_WAITS_OPTION: waits,
                "redis_message_id": new_rid(), "jobkit_due": current_millis() + delay_ms,
            }
        )  # fmt: skip
        due = waiting.options["jobkit_due"]
        self._call("wait_unknown", rid, waiting.options["redis_message_id"], waiting.encode(), message.message_id, due)
        if waits == 1 or waits % 10 == 0:
            self.broker.logger.warning("%s %s waits: %s", message.actor_name, message.message_id, error)

    def _set_paused(self, paused: bool) -> None:
        work_queue = self.broker.work_queue
        if paused and not self.paused and work_queue is not None:
            # Prefetched messages of a paused queue must not start: hand them back to the head of the queue.
            taken = work_queue.take_all(self.queue_name)
            if taken:
                self.requeue(taken)
                for message in taken:
                    self.queued_message_ids.discard(message.message_id)
        self.paused = paused

    def __next__(self) -> MessageProxy | None:
        try:
            if self.message_cache:
                message: Message[Any] = Message.decode(self.message_cache.pop(0))
                if message.queue_name != self.queue_name or "eta" in message.options:
                    message = self._from_delay_queue(message)
                if message.actor_name not in self.broker.actors:
                    self._wait_for_a_worker_that_knows(message)
                    return None
                self.queued_message_ids.add(message.message_id)
                return MessageProxy(message)
            now = time.monotonic()
            self.slot_freed.clear()  # before counting: a slot freed after this point wakes the wait below
            wanted = self.prefetch - self.outstanding_message_count
            if wanted <= 0 or (wanted < self.prefetch // 2 and self._last_fetch_full):
                # While its queue has more than it takes, a consumer refills once half its slots are free, not at
                # every free slot: the other half are still queued for (or running on) the threads, so no thread
                # waits for it, and each fetch brings half a buffer (a busy drain made a fetch per 4.5 tasks, each a
                # round trip and a script call for Redis; now one per 9). Dramatiq's default prefetch is twice the
                # threads, so a queue alone keeps a message waiting for every thread. Once a fetch comes back short
                # (the queue ran dry: tasks now come one by one), it takes each free slot at once, as Dramatiq does.
                # Meanwhile: keep saying we are alive, learn about a pause within BUSY_POLL_S, and send start markers
                # that found no other call to ride along with.
                oldest = self.broker.oldest_unsent_start()
                if now - self.last_call >= BUSY_POLL_S or (oldest is not None and now - oldest > START_FLUSH_S):
                    self._set_paused(bool(self._call("heartbeat")))
                    self.last_call = now
                self.slot_freed.wait(START_FLUSH_S if oldest is not None else BUSY_POLL_S)
                return None
            maintenance = now - self.last_maintenance >= self.broker.maintenance_interval
            if maintenance:
                self.last_maintenance = now
            idle_due, self._idle_due = self._idle_due, None
            if idle_due is not None and not maintenance and self.broker.oldest_unsent_start() is None:
                # The fetch pipelined behind the last wait just came back empty: wait again at once (an idle
                # consumer costs one BLPOP and one fetch a wait), unless a maintenance pass or a start marker needs
                # a fetch of its own.
                next_due = idle_due
            else:
                self._asked = wanted
                next_due, found = self._took(self._call("fetch", wanted, maintenance=maintenance), now)
                if found:
                    return self.__next__() if self.message_cache else None
            wait = IDLE_WAIT_MAX_S
            if self.broker.oldest_unsent_start() is not None:
                wait = START_FLUSH_S  # a task began and its marker waits: the next fetch takes it within the bound
            if next_due >= 0:
                until_due = (next_due - current_millis()) / 1000
                if until_due < BLPOP_SLACK_S:
                    # Redis times a BLPOP out up to 100 ms late (it checks timeouts on its 10 Hz clock): the last
                    # stretch before a due task is slept here, precisely, as before wake-ups.
                    time.sleep(max(0.0, until_due))
                    return None
                wait = min(wait, until_due - BLPOP_SLACK_S)
            # Never a timeout under 10 ms: Redis reads "0.001" as a long double a hair under 1 ms, rounds it to 0
            # and blocks for ever. And well inside the client's own socket timeout (an API in the same process
            # shortens it), or the wait would read as a dead Redis.
            socket_timeout = self.broker.client.connection_pool.connection_kwargs.get("socket_timeout")
            if socket_timeout:
                wait = min(wait, float(socket_timeout) / 2)
            if socket_timeout and float(socket_timeout) - wait < PIPELINED_WAIT_MARGIN_S:
                # A short socket timeout (an API in the same process): a fetch queued behind the wait might run
                # after its reply was given up for lost, and what it took would stay held by a live worker. Wait
                # alone; the next fetch looks.
                with suppress(redis.TimeoutError):
                    self.broker.client.blpop([self.wakeup], timeout=max(wait, 0.01))
                return None
            reply = self._wait_then_fetch(max(wait, 0.01))
            if reply is None:
                return None
            next_due, found = self._took(reply, time.monotonic())
            if found:
                return self.__next__() if self.message_cache else None
            self._idle_due = next_due
            return None
        except redis.ConnectionError as e:
            raise ConnectionClosed(e) from None
