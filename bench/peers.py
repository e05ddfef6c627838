"""`make bench`'s peer line: jobkit against raw Dramatiq and taskiq on the same Redis, in one run, as ratios.

Each library runs the same no-op (:mod:`bench.peer_tasks`: one ``write(2)`` of ``t_enqueue t_start`` per task) in
its own worker command, started as a new process group and ended with SIGKILL to that group (no graceful shutdown is
timed). Per library and round, alternated so that each sees the same machine:

- **drain**: N tasks sent first, then the worker starts; (N - 1) / (last start - first start), for 2 processes and
  for 1; with the worker tree's CPU per task (user + sys, /proc), Redis' CPU and commands per task (INFO deltas);
- **latency**, on the 2-process workers after the drain: they sit idle 10 s, then this process sends 200 tasks/s
  for 10 s, one by one; latency = start - the time taken right before the send call. The first task after the idle
  gap is reported alone, then p50/p99/max and the mean of the first 10.

jobkit runs with everything on (stats, task index, 24 h retention of completed records, priority, pause); raw
Dramatiq is the stock RedisBroker; taskiq is taskiq-redis' RedisStreamBroker (the fastest peer of the shared harness
in ``../shared/bench/peers``, which measures six libraries with more phases).
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.procs import tree_cpu

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = int(os.environ.get("BENCH_PEER_ROUNDS", "3"))
DRAIN_N = 10_000
RATE, SECONDS, IDLE_S = 200, 10, 10.0
THREADS = 8
LIBS = ("jobkit", "dramatiq", "taskiq")


@dataclass
class Results:
    drain: dict[int, list[float]] = field(default_factory=lambda: {2: [], 1: []})
    cpu_us: list[float] = field(default_factory=list)
    redis_us: list[float] = field(default_factory=list)
    commands: list[float] = field(default_factory=list)
    first_after_idle: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    worst: list[float] = field(default_factory=list)
    first10: list[float] = field(default_factory=list)


def _env(url: str, record: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "JOBKIT_"))}
    env.update(
        REDIS_URL=url,
        PYTHONPATH=str(ROOT),
        JOBKIT_JOBS=str(ROOT / "bench" / "jobs.yaml"),
        JOBKIT_NAMESPACE="peerjk",
        JOBKIT_SECRET="b" * 48,
        RAW_NAMESPACE="peerraw",
        BENCH_RECORD_FILE=str(record),
    )
    return env


def _worker_argv(lib: str, processes: int) -> list[str]:
    if lib == "jobkit":
        return [sys.executable, "-m", "dramatiq", "jobkit.actors", "--processes", str(processes), "--threads", "8"]
    if lib == "dramatiq":
        return [sys.executable, "-m", "dramatiq", "bench.raw_app", "--processes", str(processes), "--threads", "8"]
    return [
        sys.executable,
        "-m",
        "taskiq",
        "worker",
        "bench.taskiq_app:broker",
        "--workers",
        str(processes),
        "--log-level",
        "WARNING",
    ]


class Sender:
    """Sends one task of a library with the enqueue time as its argument; ``many`` fills a queue (untimed)."""

    def __init__(self, lib: str, url: str, env: dict[str, str]) -> None:
        self.lib = lib
        os.environ.update(env)
        self.loop = asyncio.new_event_loop()
        if lib == "jobkit":
            from jobkit.bootstrap import open_client

            client = open_client()
            self.send: Callable[[float], Any] = lambda t: client.dispatch("bench:peer", t=t)
        elif lib == "dramatiq":
            from dramatiq.brokers.redis import RedisBroker

            from bench import raw_app

            # A broker of its own on this run's namespace: raw_app's module broker keeps the namespace of the
            # first import (`make bench` imports it earlier for the worker line, under another namespace).
            broker = RedisBroker(url=url, namespace=env["RAW_NAMESPACE"])
            broker.declare_queue("default")
            self.send = lambda t: broker.enqueue(raw_app.peer.message(t))
        else:
            from bench import taskiq_app

            self.loop.run_until_complete(taskiq_app.broker.startup())
            self.send = lambda t: self.loop.run_until_complete(taskiq_app.peer.kiq(t))
            self._taskiq = taskiq_app

    def many(self, count: int) -> None:
        if self.lib != "taskiq":
            for _ in range(count):
                self.send(time.time())
            return
        peer = self._taskiq.peer

        async def fill() -> None:
            for start in range(0, count, 100):
                await asyncio.gather(*(peer.kiq(time.time()) for _ in range(min(100, count - start))))

        self.loop.run_until_complete(fill())

    def close(self) -> None:
        if self.lib == "taskiq":
            self.loop.run_until_complete(self._taskiq.broker.shutdown())
        self.loop.close()


class _Record:
    """The record file, read incrementally (the driver shares the cores with the workers it measures)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[tuple[float, float]] = []
        self._offset = 0
        self._partial = b""

    def read(self) -> list[tuple[float, float]]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return self.rows
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            sent, _, started = line.partition(b" ")
            self.rows.append((float(sent), float(started)))
        return self.rows

    def wait(self, count: int, timeout: float, worker: subprocess.Popen[bytes]) -> list[tuple[float, float]]:
        deadline = time.monotonic() + timeout
        while len(self.read()) < count:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"{len(self.rows)} of {count} tasks started before the deadline")
            time.sleep(0.02)
        return self.rows


def _redis_counters(client: redis.Redis) -> tuple[float, int]:
    info = client.info("cpu")
    stats = client.info("commandstats")
    calls = sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"]), calls


def _round(lib: str, url: str, results: Results) -> None:
    client = redis.Redis.from_url(url)
    for processes in (2, 1):
        client.flushdb()
        client.config_resetstat()
        path = Path(tempfile.mkdtemp(prefix="jk-peer-")) / "record"
        record = _Record(path)
        env = _env(url, path)
        sender = Sender(lib, url, env)
        sender.many(DRAIN_N)
        cpu0, calls0 = _redis_counters(client)
        worker = subprocess.Popen(
            _worker_argv(lib, processes), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            record.wait(1, 60, worker)
            worker_cpu0 = tree_cpu(worker.pid)
            begun = len(record.read())
            rows = list(record.wait(DRAIN_N, 120, worker))
            worker_cpu = tree_cpu(worker.pid) - worker_cpu0
            cpu1, calls1 = _redis_counters(client)
            starts = sorted(started for _, started in rows)
            results.drain[processes].append((DRAIN_N - 1) / (starts[-1] - starts[0]))
            if processes == 2:
                results.cpu_us.append(worker_cpu / (DRAIN_N - begun) * 1e6)
                results.redis_us.append((cpu1 - cpu0) / DRAIN_N * 1e6)
                results.commands.append((calls1 - calls0) / DRAIN_N)
                _latency(sender, record, worker, results)
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(30)
            sender.close()


def _latency(sender: Sender, record: _Record, worker: subprocess.Popen[bytes], results: Results) -> None:
    time.sleep(IDLE_S)  # the worker sits idle: what its first task after a quiet spell costs is measured
    before = len(record.read())
    count = RATE * SECONDS
    begin = time.perf_counter()
    for i in range(count):
        pause = begin + i / RATE - time.perf_counter()  # pacing the sends, not waiting for anything
        if pause > 0:
            time.sleep(pause)
        sender.send(time.time())
    rows = record.wait(before + count, 60, worker)[before:]
    rows.sort()
    latencies = [(started - sent) * 1000 for sent, started in rows]
    ordered = sorted(latencies)
    results.first_after_idle.append(latencies[0])
    results.p50.append(ordered[len(ordered) // 2])
    results.p99.append(ordered[int(len(ordered) * 0.99)])
    results.worst.append(ordered[-1])
    results.first10.append(statistics.fmean(latencies[:10]))


def _version(name: str) -> str:
    import importlib.metadata as md

    return md.version(name)


def peer_lines(url: str) -> list[str]:
    """The peer table, as lines of text (medians of ROUNDS, ratios jobkit / peer)."""
    results = {lib: Results() for lib in LIBS}
    for _ in range(ROUNDS):
        for lib in LIBS:
            _round(lib, url, results[lib])
    med = {
        lib: {name: statistics.median(values) for name, values in vars(r).items() if name != "drain"}
        for lib, r in results.items()
    }
    for lib, r in results.items():
        med[lib]["drain2"] = statistics.median(r.drain[2])
        med[lib]["drain1"] = statistics.median(r.drain[1])
    rows = [
        ("drain, 2 processes x 8 threads (/s)", "drain2", "{:,.0f}", True),
        ("drain, 1 process (/s)", "drain1", "{:,.0f}", True),
        ("worker CPU per task (us)", "cpu_us", "{:.0f}", False),
        ("Redis CPU per task (us)", "redis_us", "{:.1f}", False),
        ("Redis commands per task", "commands", "{:.1f}", False),
        ("enqueue->start at 200/s, p50 (ms)", "p50", "{:.2f}", False),
        ("enqueue->start at 200/s, p99 (ms)", "p99", "{:.2f}", False),
        ("enqueue->start at 200/s, max (ms)", "worst", "{:.1f}", False),
        ("first 10 after idle, mean (ms)", "first10", "{:.2f}", False),
        (f"first task after {IDLE_S:.0f} s idle (ms)", "first_after_idle", "{:.2f}", False),
    ]
    versions = f"dramatiq {_version('dramatiq')}, taskiq {_version('taskiq')}, taskiq-redis {_version('taskiq-redis')}"
    lines = [
        f"peers     {ROUNDS} rounds, medians ({versions}); ratio = jobkit / peer, "
        "above 1 is better for jobkit on rates, below 1 on costs and times",
        f"          {'':36} {'jobkit':>9} {'dramatiq':>9} {'taskiq':>9} {'vs dramatiq':>12} {'vs taskiq':>10}",
    ]
    for label, key, fmt, _higher in rows:
        values = [med[lib][key] for lib in LIBS]
        ratios = [values[0] / v if v else float("nan") for v in values[1:]]
        cells = " ".join(f"{fmt.format(v):>9}" for v in values)
        lines.append(f"          {label:36} {cells} {ratios[0]:>12.2f} {ratios[1]:>10.2f}")
    return lines


def main(url: str) -> None:
    for line in peer_lines(url):
        print(line)


if __name__ == "__main__":  # `python -m bench.peers [redis url]`: the peer line alone
    from jobkit.store.embedded import EmbeddedRedis

    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with EmbeddedRedis(Path(tempfile.mkdtemp(prefix="jk-bench-")), appendonly=False) as server:
            main(server.url)
