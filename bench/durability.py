"""The dispatch cost of ``durability: replicated`` (WAIT for one replica) against the default, on a primary and a
replica on this machine (`python -m bench.durability`). A replica across a network adds its round trip to each
replicated dispatch; this is the floor."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from jobkit.bootstrap import open_client
from jobkit.config.jobs_file import load_project
from jobkit.config.settings import Settings
from tests.support import wait_for
from tests.support.replication import RedisNode

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 3
N = 3_000


def durability_line() -> str:
    with tempfile.TemporaryDirectory(prefix="jk-bench-durability-") as directory:
        primary = RedisNode(Path(directory), "primary")
        replica = RedisNode(Path(directory), "replica", "--replicaof", "127.0.0.1", str(primary.port))
        try:
            probe = primary.client()
            wait_for(lambda: probe.info("replication")["connected_slaves"] == 1, what="the replica")
            settings = Settings(redis_url=f"redis://127.0.0.1:{primary.port}/0", namespace="jkdur")
            client = open_client(settings, load_project(ROOT / "bench" / "jobs.yaml"))

            def rate(task: str) -> float:
                start = time.perf_counter()
                for _ in range(N):
                    client.dispatch(task)
                return N / (time.perf_counter() - start)

            fast, safe = [], []
            for _ in range(ROUNDS):
                fast.append(rate("bench:noop"))
                safe.append(rate("bench:safe"))
                probe.flushdb()
            fast_rate, safe_rate = statistics.median(fast), statistics.median(safe)
        finally:
            replica.stop()
            primary.stop()
    return (
        f"durability {N} msgs   replicated {safe_rate:8.0f}/s   async (default) {fast_rate:8.0f}/s   "
        f"ratio {safe_rate / fast_rate:.2f}   ({1e3 / safe_rate - 1e3 / fast_rate:.2f} ms more per dispatch, "
        "replica on this machine)"
    )


if __name__ == "__main__":
    print(durability_line())
