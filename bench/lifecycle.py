"""Bulk dispatch and progress, side by side in one run.

- ``bulk``: ``jobkit.dispatch_many`` of 10,000 payloads (validated, built, enqueued) against Dramatiq's ``actor.send``
  in a loop, and against the ceiling of per-message Lua: Dramatiq's own enqueue script called for each message in a
  redis-py pipeline (what a hand-written bulk enqueue on the stock broker would do).
- ``progress``: a handler loop of 1,000,000 iterations with ``jobkit.progress()`` on every iteration against the same
  loop without it, inside a running task; the loop body formats one CSV row (what an export does per row). Both
  forms of the call are measured: ``progress(i, n)`` (positional, as the built-in export and most handlers call it)
  and ``progress(i, n, note=...)`` (a keyword argument, which CPython 3.11 calls on a slower path than positional
  ones, whatever the function). The cost of one call is printed too, and so is the ratio with an empty Python
  function of the same signature in its place, called the same way: the ceiling of any pure-Python ``progress()``.
"""

from __future__ import annotations

import csv
import io
import os
import statistics
import time
from typing import Any
from uuid import uuid4

import redis

ROUNDS = 3
BULK_N = 10_000
PROGRESS_N = 1_000_000


def bulk_line(url: str) -> str:
    """``dispatch_many`` against ``actor.send`` in a loop and pipelined Dramatiq Lua, messages per second."""
    from dramatiq.common import current_millis

    from bench import raw_app
    from jobkit.bootstrap import open_client

    client = open_client()
    plain = redis.Redis.from_url(url)
    payloads: list[dict[str, Any]] = [{} for _ in range(BULK_N)]
    stock = raw_app.broker
    script = stock.scripts["dispatch"]

    def many() -> float:
        started = time.perf_counter()
        client.dispatch_many("bench:noop", payloads)
        return BULK_N / (time.perf_counter() - started)

    def send_loop() -> float:
        started = time.perf_counter()
        for _ in range(BULK_N):
            raw_app.noop.send()
        return BULK_N / (time.perf_counter() - started)

    def pipelined() -> float:
        started = time.perf_counter()
        pipe = plain.pipeline(transaction=False)
        for index in range(BULK_N):
            message = raw_app.noop.message().copy(options={"redis_message_id": str(uuid4())})
            args = [
                "enqueue", current_millis(), "default", stock.broker_id, stock.heartbeat_timeout,
                stock.dead_message_ttl, "0", 7999, message.options["redis_message_id"], message.encode(),
            ]  # fmt: skip
            script(args=args, keys=[stock.namespace], client=pipe)
            if index % 1000 == 999:
                pipe.execute()
        pipe.execute()
        return BULK_N / (time.perf_counter() - started)

    runs = {"many": many, "loop": send_loop, "piped": pipelined}
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(ROUNDS):  # interleaved, so that each side sees the same machine
        for name, run in runs.items():
            samples[name].append(run())
            plain.flushdb()
    rates = {name: statistics.median(values) for name, values in samples.items()}
    return (
        f"bulk      {BULK_N} msgs   dispatch_many {rates['many']:8.0f}/s   actor.send loop {rates['loop']:8.0f}/s   "
        f"pipelined Lua {rates['piped']:8.0f}/s   ratio {rates['many'] / rates['piped']:.2f} of the ceiling "
        "(goal >= 0.9, >= 30000/s)"
    )


def _empty(done: float, total: float | None = None, note: str | None = None) -> None:
    return None


def _row_loop(form: str, progress: Any = None) -> float:
    """One CSV row per iteration, with ``progress`` called each row in ``form``: "" (not called), "positional"
    (``progress(done, total)``, as most handlers and the built-in export call it) or "keyword" (with ``note=`` by
    keyword, the slowest call Python has for it)."""
    if progress is None:
        from jobkit import progress  # as a handler would import it

    report, keyword = form != "", form == "keyword"  # local tests in the loop: a plain bool costs about 1 ns
    out = io.StringIO()
    writer = csv.writer(out)
    started = time.perf_counter()
    for index in range(PROGRESS_N):
        writer.writerow((index, "title", 3.5, None, "2026-12-02"))
        if index % 4096 == 0:
            out.seek(0)
            out.truncate()
        if report:
            if keyword:
                progress(index + 1, PROGRESS_N, note="rows")
            else:
                progress(index + 1, PROGRESS_N)
    return time.perf_counter() - started


def _bare_calls(report: bool) -> float:
    import jobkit

    started = time.perf_counter()
    total = 0
    for index in range(PROGRESS_N):
        total += index
        if report:
            jobkit.progress(index + 1, PROGRESS_N)
    return time.perf_counter() - started


def progress_line() -> str:
    """The speed of a loop with progress() on every iteration relative to the same loop without it, for both forms of
    the call; each next to an empty function called the same way."""
    from jobkit.engine.running import Running, enter, leave

    forms = ("positional", "keyword")
    enter(Running("bench", "default"))
    try:
        plain, costs = [], []
        ratios: dict[str, list[float]] = {form: [] for form in forms}
        ceilings: dict[str, list[float]] = {form: [] for form in forms}
        for _ in range(ROUNDS):  # interleaved: each ratio compares runs on the same machine state
            without = _row_loop("")
            plain.append(without)
            for form in forms:
                ratios[form].append(without / _row_loop(form))
                ceilings[form].append(without / _row_loop(form, _empty))
            costs.append(_bare_calls(True) - _bare_calls(False))
    finally:
        leave()
    ratio = {form: statistics.median(values) for form, values in ratios.items()}
    ceiling = {form: statistics.median(values) for form, values in ceilings.items()}
    per_call_ns = statistics.median(costs) / PROGRESS_N * 1e9
    per_row_us = statistics.median(plain) / PROGRESS_N * 1e6
    return (
        f"progress  {PROGRESS_N} rows  with progress() each row, the speed without x{ratio['positional']:.2f} for "
        f"progress(i, n), x{ratio['keyword']:.2f} for progress(i, n, note=...) (goal >= 0.9)   one call "
        f"{per_call_ns:.0f} ns, one CSV row {per_row_us:.2f} us; an empty function instead "
        f"x{ceiling['positional']:.2f} / x{ceiling['keyword']:.2f}"
    )


def main(url: str | None = None) -> None:
    if url is not None:
        os.environ.setdefault("JOBKIT_NAMESPACE", "jkbench")
        print(bulk_line(url))
    print(progress_line())
