"""Each worker process records what a heartbeat cannot say: host, pid, thread count, start time, queues, and the
task types it serves."""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any, cast

import dramatiq
from dramatiq import Middleware

from jobkit.engine.broker import JobkitBroker

__all__ = ["WorkerInfo"]


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


class WorkerInfo(Middleware):
    """Writes this worker's facts under its broker id in ``K.workers`` at boot and removes them at shutdown;
    entries of workers killed without a shutdown are pruned at the next boot."""

    def __init__(self, broker: JobkitBroker) -> None:
        self.broker = broker

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        queues = sorted(worker.consumer_whitelist or self.broker.get_declared_queues())
        facts = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "threads": worker.worker_threads,
            "started_at": _iso(time.time() * 1000),
            "queues": queues,
            # The declared actors whose queue this worker consumes: the task types it runs.
            "tasks": sorted(
                name for name in self.broker.get_declared_actors() if self.broker.get_actor(name).queue_name in queues
            ),
        }
        self.broker.client.hset(self.broker.keys.workers, self.broker.broker_id, json.dumps(facts))
        self._prune()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.broker.client.hdel(self.broker.keys.workers, self.broker.broker_id)

    def _prune(self) -> None:
        """Drop the entries of workers whose heartbeat stopped (killed without a shutdown)."""
        client, keys = self.broker.client, self.broker.keys
        entries = {k.decode(): json.loads(v) for k, v in cast(dict[bytes, bytes], client.hgetall(keys.workers)).items()}
        known = list(entries)
        if not known:
            return
        beats = cast(list[float | None], client.zmscore(keys.heartbeats, known))
        oldest = time.time() * 1000 - self.broker.heartbeat_timeout
        dead = [
            worker
            for worker, beat in zip(known, beats, strict=True)
            if (beat or 0) < oldest and entries[worker].get("started_at", "") < _iso(oldest)
        ]
        if dead:
            client.hdel(keys.workers, *dead)
