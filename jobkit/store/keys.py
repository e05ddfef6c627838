"""The Redis key layout: every key jobkit reads or writes is built here, and nowhere else.

:data:`LAYOUT` is the one table. Python code gets keys from :class:`Keys`; Lua scripts write ``K.pending(queue)``,
which :func:`expand_lua` turns into the concatenation the same template gives when the script is loaded, so a key
cannot be spelled two ways.

One naming style, Dramatiq's: ``<ns>:<queue>`` and ``<ns>:<queue>.<part>`` for a queue's keys, ``<ns>:__<name>__``
(and ``<ns>:__<name>__.<part>``) for everything else. The keys Dramatiq's own ``RedisBroker`` uses (the pending list,
``.msgs``, ``.XQ``, ``.DQ``, ``__heartbeats__``, ``__acks__``) keep Dramatiq's names, so a stock Dramatiq producer on
the same namespace enqueues where jobkit's workers look. Queue names cannot contain ``.`` or ``:``, and names of the
form ``__x__`` are refused for queues, so no queue key collides with another key.

Words used below: ``ns`` the namespace (``JOBKIT_NAMESPACE``), ``rid`` one enqueue of a message (Dramatiq's
``redis_message_id``; the message id stays the same across retries, the rid does not), ``day`` ``ms // 86400000``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["LAYOUT", "Key", "Keys", "expand_lua", "lua_prelude"]


@dataclass(frozen=True)
class Key:
    template: str
    kind: str
    """The Redis type: string, list, hash, set or zset."""
    holds: str


LAYOUT: dict[str, Key] = {
    # -- workers (Dramatiq's names) --------------------------------------------------------------------------------
    "heartbeats": Key("{ns}:__heartbeats__", "zset", "worker id -> last heartbeat (ms); worker commands only"),
    "worker_acks": Key("{ns}:__acks__.{worker}", "set", "queues that worker fetched from"),
    "worker_queue_acks": Key("{ns}:__acks__.{worker}.{queue}", "set", "rids that worker fetched and not yet acked"),
    "workers": Key("{ns}:__workers__", "hash", "worker id -> JSON facts (host, pid, threads, started_at)"),
    # -- a queue ---------------------------------------------------------------------------------------------------
    "pending": Key("{ns}:{queue}", "list", "pending rids, oldest first (Dramatiq's queue list)"),
    "messages": Key("{ns}:{queue}.msgs", "hash", "rid -> message, for every live rid (Dramatiq's)"),
    "delayed": Key(
        "{ns}:{queue}.DQ", "list", "Dramatiq's delay queue: stock producers' delayed rids (a fetch moves them)"
    ),
    "delayed_messages": Key("{ns}:{queue}.DQ.msgs", "hash", "rid -> message of Dramatiq's delay queue"),
    "wakeup": Key(
        "{ns}:{queue}.wakeup", "list", "a token while the pending list went from empty to not: idle consumers BLPOP it"
    ),
    "ids": Key("{ns}:{queue}.ids", "hash", "message id -> its current rid (live or archived)"),
    "active": Key("{ns}:{queue}.active", "hash", "rid -> started at (ms): running now"),
    "scheduled": Key("{ns}:{queue}.scheduled", "zset", "rid -> due (ms): delayed and at= tasks"),
    "retry": Key("{ns}:{queue}.retry", "zset", "rid -> due (ms): failed attempts waiting for the next one"),
    "dead": Key("{ns}:{queue}.XQ", "zset", "rid -> archived at (ms) (Dramatiq's dead-letter set)"),
    "dead_messages": Key("{ns}:{queue}.XQ.msgs", "hash", "rid -> message as its final attempt ended"),
    "done": Key(
        "{ns}:{queue}.done", "zset", "message id -> kept until (ms): completed tasks, at most retention.max (expires)"
    ),
    "done_messages": Key("{ns}:{queue}.done.msgs", "hash", "message id -> completed record (expires with .done)"),
    "progress": Key("{ns}:{queue}.progress.{id}", "string", "a running task's latest progress (JSON), 1 h at most"),
    "processed_day": Key("{ns}:{queue}.processed.{day}", "string", "attempts finished that UTC day (90 days)"),
    "failed_day": Key("{ns}:{queue}.failed.{day}", "string", "attempts failed that UTC day (90 days)"),
    "processed_total": Key("{ns}:{queue}.processed_total", "string", "attempts finished, ever"),
    "failed_total": Key("{ns}:{queue}.failed_total", "string", "attempts failed, ever"),
    # -- queues ----------------------------------------------------------------------------------------------------
    "paused": Key("{ns}:__paused__", "set", "paused queues"),
    # -- flow control ----------------------------------------------------------------------------------------------
    "unique": Key("{ns}:__unique__.{task}.{digest}", "string", "a unique task's lock: the id of its holder"),
    "rate": Key("{ns}:__rate__.{task}", "zset", "start -> start time (ms) within the rate window"),
    "running": Key("{ns}:__running__.{task}", "zset", "rid -> slot expiry (ms): the concurrency semaphore"),
    "workflow": Key("{ns}:__workflow__.{id}", "hash", "one workflow run's state"),
    # -- task lifecycle --------------------------------------------------------------------------------------------
    "cancel": Key("{ns}:__cancel__", "channel", "pub/sub: '<message id>\\t<by>' tells workers to cancel a task"),
    "canceled": Key("{ns}:__canceled__.{id}", "string", "who canceled a task a worker holds (10 min): not run again"),
    "finished": Key("{ns}:__finished__.{id}", "channel", "pub/sub: the task's final state, as it settles"),
    "waiters": Key(
        "{ns}:__waiters__", "zset", "message id -> waited for until (ms): result() callers; acks publish only to these"
    ),
    # -- scheduling ------------------------------------------------------------------------------------------------
    "schedules": Key("{ns}:__schedules__", "hash", "entry id -> JSON definition"),
    "schedules_version": Key("{ns}:__schedules__.version", "string", "bumped on every change of the entries"),
    "schedules_last": Key("{ns}:__schedules__.last", "hash", "entry id -> latest nominal fire time enqueued (ms)"),
    "schedules_skipped": Key("{ns}:__schedules__.skipped", "hash", "entry id -> fires skipped (a unique lock held)"),
    "schedule_fired": Key("{ns}:__schedules__.fired.{id}.{ms}", "string", "claim of one nominal fire time"),
    # -- operations ------------------------------------------------------------------------------------------------
    "health": Key("{ns}:__health__", "string", "the latest health check (JSON)"),
    "revoked_tokens": Key("{ns}:__revoked__", "hash", "revoked API token id -> when it would have expired (s)"),
    "alert_cooldown": Key("{ns}:__alerts__.{rule}", "string", "set while the alert rule is cooling down"),
    "alert_samples": Key("{ns}:__alert_samples__", "zset", "JSON counters per queue -> when they were taken (ms)"),
    "results": Key("{ns}:__results__", "prefix", "the namespace of Dramatiq's Results backend"),
}

_FIELD = re.compile(r"\{(\w+)\}")


def _fields(template: str) -> list[str]:
    return [name for name in _FIELD.findall(template) if name != "ns"]


class Keys:
    """The keys of one namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.heartbeats = self._key("heartbeats")
        self.workers = self._key("workers")
        self.paused = self._key("paused")
        self.schedules = self._key("schedules")
        self.schedules_version = self._key("schedules_version")
        self.schedules_last = self._key("schedules_last")
        self.schedules_skipped = self._key("schedules_skipped")
        self.health = self._key("health")
        self.alert_samples = self._key("alert_samples")
        self.results = self._key("results")
        self.revoked_tokens = self._key("revoked_tokens")
        self.cancel = self._key("cancel")
        self.waiters = self._key("waiters")

    def _key(self, name: str, **parts: object) -> str:
        return LAYOUT[name].template.format(ns=self.namespace, **parts)

    # -- workers ---------------------------------------------------------------------------------------------------
    def worker_acks(self, worker: str) -> str:
        return self._key("worker_acks", worker=worker)

    def worker_queue_acks(self, worker: str, queue: str) -> str:
        return self._key("worker_queue_acks", worker=worker, queue=queue)

    # -- a queue ---------------------------------------------------------------------------------------------------
    def pending(self, queue: str) -> str:
        return self._key("pending", queue=queue)

    def messages(self, queue: str) -> str:
        return self._key("messages", queue=queue)

    def wakeup(self, queue: str) -> str:
        return self._key("wakeup", queue=queue)

    def active(self, queue: str) -> str:
        return self._key("active", queue=queue)

    def ids(self, queue: str) -> str:
        return self._key("ids", queue=queue)

    def scheduled(self, queue: str) -> str:
        return self._key("scheduled", queue=queue)

    def retry(self, queue: str) -> str:
        return self._key("retry", queue=queue)

    def dead(self, queue: str) -> str:
        return self._key("dead", queue=queue)

    def dead_messages(self, queue: str) -> str:
        return self._key("dead_messages", queue=queue)

    def done(self, queue: str) -> str:
        return self._key("done", queue=queue)

    def done_messages(self, queue: str) -> str:
        return self._key("done_messages", queue=queue)

    def processed_day(self, queue: str, day: int) -> str:
        return self._key("processed_day", queue=queue, day=day)

    def failed_day(self, queue: str, day: int) -> str:
        return self._key("failed_day", queue=queue, day=day)

    def queue_keys(self, queue: str) -> list[str]:
        """Every key of one queue that holds tasks (not its counters)."""
        names = ("pending", "wakeup", "messages", "delayed", "delayed_messages", "ids", "active", "scheduled", "retry")
        return [self._key(name, queue=queue) for name in (*names, "dead", "dead_messages", "done", "done_messages")]

    def progress(self, queue: str, message_id: str) -> str:
        return self._key("progress", queue=queue, id=message_id)

    # -- task lifecycle --------------------------------------------------------------------------------------------
    def canceled(self, message_id: str) -> str:
        return self._key("canceled", id=message_id)

    def finished(self, message_id: str) -> str:
        return self._key("finished", id=message_id)

    # -- flow control ----------------------------------------------------------------------------------------------
    def unique(self, task: str, digest: str) -> str:
        return self._key("unique", task=task, digest=digest)

    def rate(self, task: str) -> str:
        return self._key("rate", task=task)

    def running(self, task: str) -> str:
        return self._key("running", task=task)

    def workflow(self, workflow_id: str) -> str:
        return self._key("workflow", id=workflow_id)

    # -- scheduling and operations ---------------------------------------------------------------------------------
    def schedule_fired(self, entry_id: str, nominal_ms: int) -> str:
        return self._key("schedule_fired", id=entry_id, ms=nominal_ms)

    def alert_cooldown(self, rule: str) -> str:
        return self._key("alert_cooldown", rule=rule)


def lua_prelude() -> str:
    """What every script starts with: ``ns``, the namespace (``KEYS[1]``)."""
    return "local ns = KEYS[1]\n"


def expand_lua(source: str) -> str:
    """``source`` with every ``K.<name>`` (a key without fields) and ``K.<name>(a, b)`` (one with fields, given in the
    template's order) replaced by the Lua expression that builds that key from :data:`LAYOUT`. Done once, when a
    script is loaded, so a script reads ``K.pending(queue)`` and runs a plain concatenation, as fast as if it had
    been written out by hand. Comments (from ``--`` to the end of a line) are left as they are."""
    lines = []
    for line in source.split("\n"):
        code, dashes, comment = line.partition("--")
        lines.append(_expand_code(code) + dashes + comment)
    return "\n".join(lines)


def _expand_code(source: str) -> str:
    out: list[str] = []
    position = 0
    for match in _LUA_KEY.finditer(source):
        name = match.group(1)
        if name not in LAYOUT:
            raise KeyError(f"K.{name} in a Lua script is not a key of jobkit/store/keys.py")
        template = LAYOUT[name].template
        fields = _fields(template)
        end = match.end()
        arguments: list[str] = []
        if fields:
            if source[end : end + 1] != "(":
                raise ValueError(f"K.{name} takes ({', '.join(fields)})")
            arguments, end = _lua_arguments(source, end)
            if len(arguments) != len(fields):
                raise ValueError(f"K.{name} takes {len(fields)} argument(s) ({', '.join(fields)}), found {arguments}")
        values = dict(zip(fields, arguments, strict=True))
        pieces = []
        for index, piece in enumerate(_FIELD.split(template)):
            if index % 2 == 0:
                if piece:
                    pieces.append('"' + piece + '"')
            else:
                pieces.append("ns" if piece == "ns" else f"({values[piece]})")
        out.append(source[position : match.start()])
        out.append("(" + " .. ".join(pieces) + ")")
        position = end
    out.append(source[position:])
    return "".join(out)


_LUA_KEY = re.compile(r"(?<![\w.])K\.(\w+)")


def _lua_arguments(source: str, start: int) -> tuple[list[str], int]:
    """The comma-separated arguments of the call whose ``(`` is at ``start``, and the index after its ``)``."""
    depth, current, arguments = 0, "", []
    for index in range(start, len(source)):
        char = source[index]
        if char in "([{":
            depth += 1
            if depth == 1:
                continue
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                arguments.append(current.strip())
                return [a for a in arguments if a], index + 1
        elif char == "," and depth == 1:
            arguments.append(current.strip())
            current = ""
            continue
        current += char
    raise ValueError("a K.<name>( call without its closing parenthesis")
