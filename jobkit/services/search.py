"""Search every stored task of the project's queues by id prefix, task type, payload text and error text.

Redis does the scanning (the ``search`` Lua script): each call examines a bounded batch of stored messages (at most
:data:`CALL_ENTRIES` of them, :data:`CALL_BYTES` or about :data:`CALL_MS` milliseconds, checked every few messages
however large they are, so the workers sharing that Redis never wait long) and returns its matches and where to
resume. A message over :data:`LARGEST_SEARCHED` is skipped unread: it never matches. :meth:`Search.search` calls it
until a page is full, the scan is done, or its time budget is spent, and answers a cursor to resume from; a search
therefore answers in bounded time however many tasks are stored, and a client that wants more follows the cursor.

What matches: the text (case-insensitive for ASCII letters) is a prefix of the task's id, or occurs in its task type,
its last error, or a key or value of its payload. Sensitive fields never match: not their sealed form at rest, not
their clear value, not their "***". Every match is checked once more here, on the task exactly as a reader sees it
(redacted), so what is found is always visible in what is shown.

Like Redis's own SCAN, a cursor walks hashes that may change under it: a task that moves between states while a
search pages through may be missed or seen twice (never within one answer).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from jobkit.engine.sealing import SEALED_PREFIX
from jobkit.errors import InvalidRequest, TooBusy, did_you_mean
from jobkit.services.queues import STATES, Queues, State, TaskInfo

__all__ = ["LARGEST_SEARCHED", "MAX_CONCURRENT", "MAX_TEXT", "SEARCH_BUDGET", "Search", "SearchPage"]

#: How long one search answer may take, at most (it then answers what it found and a cursor).
SEARCH_BUDGET = timedelta(milliseconds=250)
#: What one call of the Lua script may examine: messages, bytes of stored messages, and milliseconds of Redis time
#: (the script reads its clock every few messages, so a call ends within about CALL_MS whatever the messages weigh).
CALL_ENTRIES = 10_000
CALL_BYTES = 8 * 1024 * 1024
CALL_MS = 20
#: HSCAN copies every value of its batch before the script looks at one, so its COUNT follows the size of the
#: messages: each hash starts with FIRST_COUNT, and each next batch asks for about BATCH_BYTES of messages the size
#: of the last batch's, growing at most 4 times a batch, at most MAX_COUNT (hundreds of small ones, one of 900 KB).
FIRST_COUNT = 4
BATCH_BYTES = 256 * 1024
MAX_COUNT = 500
#: A stored message longer than this is not searched (skipped unread: matching it would cost Redis time in
#: proportion to its size); the README says so.
LARGEST_SEARCHED = 64 * 1024
#: Searches one process runs at once; one more is refused (429) rather than queued behind them.
MAX_CONCURRENT = 4
#: The longest text a search takes.
MAX_TEXT = 200
MAX_SIZE = 500
_LIVE = frozenset({"pending", "active", "scheduled", "retry"})
_CURSOR = re.compile(r"([0-9]{1,6})\.([0-9]{1,20})\.([0-9]{1,6})\.([0-9]{1,3})\.([0-9a-f]{8})")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(text: str) -> str:
    """``text`` with ASCII letters lowercased (what the Lua script does to bytes: nothing else is folded)."""
    return text.translate(_ASCII_LOWER)


@dataclass(frozen=True)
class SearchPage:
    tasks: list[TaskInfo]
    """The matches of this answer (each with its queue and state)."""
    cursor: str | None
    """Where the next answer resumes; None when every stored task was looked at."""
    scanned: int = 0
    """Stored messages looked at by this answer."""
    queues: list[str] = field(default_factory=list)
    """The queues searched."""


class Search:
    """Text search over the stored tasks of a project's queues (see the module docstring)."""

    def __init__(
        self,
        queues: Queues,
        budget: timedelta = SEARCH_BUDGET,
        call_entries: int = CALL_ENTRIES,
        *,
        call_bytes: int = CALL_BYTES,
        largest: int = LARGEST_SEARCHED,
        concurrent: int = MAX_CONCURRENT,
    ) -> None:
        self.queues = queues
        self.call_entries = call_entries
        self.call_bytes = call_bytes
        self.largest = largest
        self.concurrent = concurrent
        self._lock = threading.Lock()
        self._running = 0
        self.client = queues.client
        self.budget_s = budget.total_seconds()
        self._lua = queues.client.broker.lua
        self._sensitive = json.dumps(
            {name: list(spec.sensitive) for name, spec in self.client.project.tasks.items() if spec.sensitive}
        )

    def search(
        self,
        text: str = "",
        *,
        queues: Iterable[str] | None = None,
        states: Iterable[str] | None = None,
        task: str | None = None,
        cursor: str | None = None,
        size: int = 50,
    ) -> SearchPage:
        """Up to ``size`` tasks matching ``text`` in ``queues`` (default: all) and ``states`` (default: all), of type
        ``task`` (default: any), from ``cursor`` on (default: the start). :class:`TooBusy` when this process already
        runs :data:`MAX_CONCURRENT` searches."""
        with self._lock:
            if self._running >= self.concurrent:
                raise TooBusy(
                    f"search: this process already runs {self.concurrent} searches at once, the most it takes; "
                    "try again in a moment"
                )
            self._running += 1
        try:
            return self._search(text, queues=queues, states=states, task=task, cursor=cursor, size=size)
        finally:
            with self._lock:
                self._running -= 1

    @property
    def running(self) -> int:
        """Searches this process runs now."""
        return self._running

    def _search(
        self,
        text: str,
        *,
        queues: Iterable[str] | None,
        states: Iterable[str] | None,
        task: str | None,
        cursor: str | None,
        size: int,
    ) -> SearchPage:
        text = text.strip()
        if len(text) > MAX_TEXT:
            raise InvalidRequest(f"q: at most {MAX_TEXT} characters, found {len(text)}")
        if not 1 <= size <= MAX_SIZE:
            raise InvalidRequest(f"size: between 1 and {MAX_SIZE}, found {size}")
        names = [self.queues.check(name) for name in dict.fromkeys(queues or ())] or self.queues.list()
        wanted = self._states(states)
        if task:
            self.client.task_spec(task)  # an unknown task type: UnknownTask with a "did you mean"
        sources = [
            part
            for name in names
            for store in ("live", "archived", "completed")
            if (store == "live" and wanted & _LIVE) or store in wanted
            for part in (name, store)
        ]
        digest = hashlib.sha256(
            json.dumps([text, names, sorted(wanted), task or ""], separators=(",", ":")).encode()
        ).hexdigest()[:8]
        source, hscan, skip, count = self._resume(cursor, digest, len(sources) // 2)
        needle = fold(text)
        needle_json = fold(json.dumps(text)[1:-1])
        found: list[TaskInfo] = []
        seen: set[str] = set()
        scanned = 0
        done = not sources
        deadline = time.monotonic() + self.budget_s
        while not done:
            raw = self._lua.call(
                "search", int(time.time() * 1000), needle, needle_json, task or "", json.dumps(task or ""),
                ",".join(sorted(wanted & _LIVE)), self._sensitive, self.call_entries, CALL_MS, size - len(found),
                source, hscan, skip, self.call_bytes, self.largest, count, BATCH_BYTES, MAX_COUNT, FIRST_COUNT,
                *sources,
            )  # fmt: skip
            source, hscan, skip, examined, done = int(raw[0]), raw[1].decode(), int(raw[2]), int(raw[3]), bool(raw[4])
            count = int(raw[5])
            scanned += examined
            for index in range(6, len(raw), 4):
                name, state, score, data = raw[index].decode(), raw[index + 1].decode(), raw[index + 2], raw[index + 3]
                info = self.queues.describe(name, cast(State, state), score, data)
                if info.id not in seen and matches(info, needle):
                    seen.add(info.id)
                    found.append(info)
            if len(found) >= size or time.monotonic() >= deadline:
                break
        next_cursor = None if done else f"{source}.{hscan}.{skip}.{count}.{digest}"
        return SearchPage(found, next_cursor, scanned, names)

    @staticmethod
    def _states(states: Iterable[str] | None) -> frozenset[str]:
        chosen = frozenset(states or ()) or frozenset(STATES)
        for state in sorted(chosen):
            if state not in STATES:
                hint = did_you_mean(state, set(STATES)) or "one of " + ", ".join(STATES)
                raise InvalidRequest(f"state: unknown state {state!r} ({hint})")
        return chosen

    @staticmethod
    def _resume(cursor: str | None, digest: str, sources: int) -> tuple[int, str, int, int]:
        if not cursor:
            return 1, "0", 0, FIRST_COUNT
        found = _CURSOR.fullmatch(cursor)
        if found is None:
            raise InvalidRequest(f"cursor: {cursor[:40]!r} is not a cursor a search answered")
        if found.group(5) != digest:
            raise InvalidRequest("cursor: it belongs to a search with other text or filters; start again without it")
        # The digest is computable from public inputs, so the numbers are checked too: a source outside the list
        # would make the script read its own arguments as a queue name, a cursor of 2**64 or more is refused by
        # HSCAN itself, a COUNT outside 1..MAX_COUNT is not one the script chose. None is a cursor a search answered.
        source, hscan, skip, count = int(found.group(1)), found.group(2), int(found.group(3)), int(found.group(4))
        if not 1 <= source <= sources or int(hscan) >= 2**64 or not 1 <= count <= MAX_COUNT:
            raise InvalidRequest(f"cursor: {cursor[:40]!r} is not a cursor a search answered; start again without it")
        return source, str(int(hscan)), skip, count


def matches(info: TaskInfo, needle: str) -> bool:
    """Whether ``needle`` (already folded) matches the task as a reader sees it (its payload redacted)."""
    if not needle:
        return True
    if fold(info.id).startswith(needle) or needle in fold(info.task):
        return True
    if info.last_error and needle in fold(info.last_error):
        return True
    return _in_payload(info.payload, needle)


def _in_payload(node: Any, needle: str) -> bool:
    stack = [node]
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            for key, child in value.items():
                if isinstance(key, str) and needle in fold(key):
                    return True
                stack.append(child)
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            if not value.startswith(SEALED_PREFIX) and needle in fold(value):
                return True
        elif isinstance(value, int | float) and not isinstance(value, bool) and needle in json.dumps(value):
            return True
    return False
