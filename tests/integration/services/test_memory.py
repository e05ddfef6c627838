"""Redis memory and jobkit's share of it, per queue with its largest key (issue 17)."""

from __future__ import annotations

from jobkit.services.client import Client
from jobkit.services.system import System, human_bytes


def test_memory_names_each_queues_share_and_its_largest_key(client: Client, namespace: str) -> None:
    system = System(client)
    empty = system.memory()
    assert {q.queue: q.bytes for q in empty.queues} == {"critical": 0, "default": 0, "low": 0}

    client.dispatch_many("test:greet", [{"name": "x" * 200} for _ in range(2000)])
    report = system.memory()
    default = {q.queue: q for q in report.queues}["default"]
    # 2,000 messages of more than 200 bytes each: the message store is the largest key, and the queue's share is
    # what it holds (MEMORY USAGE samples, so roughly).
    assert default.largest_key == f"{namespace}:default.msgs"
    assert 2000 * 200 < default.largest_bytes <= default.bytes < 2000 * 1000
    assert report.jobkit_bytes >= default.bytes and report.used_memory > report.jobkit_bytes
    assert f"default {human_bytes(default.bytes)} (largest {namespace}:default.msgs" in report.summary()
    assert {q.queue: q.bytes for q in report.queues}["low"] == 0
