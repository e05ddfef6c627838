"""Many stored tasks at once, written straight into the broker's keys through a pipeline (what that many dispatches,
fetches and failures would leave behind): for the search tests and ``make bench``.

Each task is a copy of a real message the client built (so sealing, options and encoding are the real ones) with
its own id and a numbered payload; the ones stored as retry or archived carry a numbered error.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from jobkit.engine.sealing import SEALED_PREFIX
from jobkit.services.client import Client
from jobkit.services.queues import Queues

__all__ = ["STATE_SHARES", "WORDS", "fill_tasks", "state_of"]

#: How a filled store is spread over the states (shares of each queue's tasks).
STATE_SHARES: tuple[tuple[str, float], ...] = (
    ("pending", 0.4),
    ("scheduled", 0.2),
    ("retry", 0.1),
    ("archived", 0.1),
    ("completed", 0.2),
)
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
_BATCH = 5_000
_HOUR_MS = 3_600_000


def fill_tasks(
    client: Client,
    count: int,
    templates: Sequence[tuple[str, dict[str, Any]]],
    shares: Sequence[tuple[str, float]] = STATE_SHARES,
) -> int:
    """Store ``count`` tasks spread over the states of ``shares``, cycling through ``templates`` (task,
    payload): task ``n`` has `` <word> n<n>`` appended to each string of its payload (``word`` cycling through
    :data:`WORDS`), and a retry or archived one the error ``ConnectionError: <word> host n<n> refused``. Returns how
    many were stored."""
    queues = Queues(client)
    made: list[tuple[str, dict[str, Any]]] = []
    for task, payload in templates:
        ref = client.dispatch(task, delay=3600, **payload)  # a real message, taken back at once
        rid = client.redis.hget(client.keys.ids(ref.queue), ref.id)
        data = client.redis.hget(client.keys.messages(ref.queue), rid)  # type: ignore[arg-type]
        assert isinstance(data, bytes)
        made.append((ref.queue, json.loads(data)))
        queues.delete(ref.queue, ref.id)
    now_ms = int(time.time() * 1000)
    keys = client.keys
    pipe = client.redis.pipeline(transaction=False)
    for n in range(count):
        if n and n % _BATCH == 0:
            pipe.execute()
        queue, template = made[n % len(made)]
        state, word = state_of(n, count, shares), WORDS[n % len(WORDS)]
        message_id, rid = str(uuid.uuid4()), str(uuid.uuid4())
        kwargs = {
            key: f"{value} {word} n{n}" if isinstance(value, str) and not value.startswith(SEALED_PREFIX) else value
            for key, value in template["kwargs"].items()
        }
        options = {**template["options"], "redis_message_id": rid}
        options.pop("jobkit_due", None)
        if state in ("retry", "archived"):
            options.update(last_error=f"ConnectionError: {word} host n{n} refused", retries=1, last_failed_at=now_ms)
        data = json.dumps({**template, "message_id": message_id, "kwargs": kwargs, "options": options},
                          separators=(",", ":"))  # fmt: skip
        if state == "completed":
            pipe.zadd(keys.done(queue), {message_id: now_ms + _HOUR_MS})
            pipe.hset(keys.done_messages(queue), message_id, data)
            continue
        pipe.hset(keys.ids(queue), message_id, rid)
        if state == "archived":
            pipe.zadd(keys.dead(queue), {rid: now_ms})
            pipe.hset(keys.dead_messages(queue), rid, data)
            continue
        pipe.hset(keys.messages(queue), rid, data)
        if state == "pending":
            pipe.rpush(keys.pending(queue), rid)
        else:
            pipe.zadd(keys.scheduled(queue) if state == "scheduled" else keys.retry(queue), {rid: now_ms + _HOUR_MS})
    pipe.execute()
    return count


def state_of(n: int, count: int, shares: Sequence[tuple[str, float]] = STATE_SHARES) -> str:
    """The state task ``n`` of ``count`` is stored in (the states are spread over the numbers)."""
    position, edge = (n * 7919) % count / count, 0.0
    for state, share in shares:
        edge += share
        if position < edge:
            return state
    return shares[-1][0]
