"""Bulk dispatch and progress, side by side in one run.

- ``bulk``: ``jobkit.dispatch_many`` of 10,000 payloads (validated, built, enqueued) against Dramatiq's ``actor.send``
  in a loop, and against the ceiling of per-message Lua: Dramatiq's own enqueue script called for each message in a
  redis-py pipeline (what a hand-written bulk enqueue on the stock broker would do).
- ``progress``: a handler loop of 1,000,000 iterations with ``jobkit.progress()`` on every iteration against the same
  loop without it, inside a running task; the loop body formats one CSV row (what an export does per row), and the
  cost of one call is printed too, and so is the ratio with an empty Python function of the same signature in its
  place: the ceiling of any pure-Python ``progress()``.
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


def _row_loop(report: bool, progress: Any = None) -> float:
    if progress is None:
        from jobkit import progress  # as a handler would import it

    out = io.StringIO()
    writer = csv.writer(out)
    started = time.perf_counter()
    for index in range(PROGRESS_N):
        writer.writerow((index, "title", 3.5, None, "2026-12-02"))
        if index % 4096 == 0:
            out.seek(0)
            out.truncate()
        if report:
            progress(index + 1, PROGRESS_N, note="rows")
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
    """The speed of a loop with progress() on every iteration relative to the same loop without it."""
    from jobkit.engine.running import Running, enter, leave

    enter(Running("bench", "default"))
    try:
        plain, ratios, ceilings, costs = [], [], [], []
        for _ in range(ROUNDS):  # interleaved pairs: each ratio compares two runs on the same machine state
            without = _row_loop(False)
            plain.append(without)
            ratios.append(without / _row_loop(True))
            ceilings.append(_row_loop(False) / _row_loop(True, _empty))
            costs.append(_bare_calls(True) - _bare_calls(False))
    finally:
        leave()
    ratio = statistics.median(ratios)
    ceiling = statistics.median(ceilings)
    per_call_ns = statistics.median(costs) / PROGRESS_N * 1e9
    per_row_us = statistics.median(plain) / PROGRESS_N * 1e6
    return (
        f"progress  {PROGRESS_N} rows  with progress() each row {ratio:.2f}x the speed without (goal >= 0.9)   "
        f"one call {per_call_ns:.0f} ns, one CSV row {per_row_us:.2f} us; an empty function instead {ceiling:.2f}x"
    )


def main(url: str | None = None) -> None:
    if url is not None:
        os.environ.setdefault("JOBKIT_NAMESPACE", "jkbench")
        print(bulk_line(url))
    print(progress_line())
