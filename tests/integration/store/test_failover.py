"""Fail-over: a primary, a replica behind a slow link and three Sentinels, all with a password. The primary is killed
(``kill -9``, and the link cut with it: its host is gone) while dispatch threads keep sending; the Sentinels promote
the replica, and a worker, a scheduler and the API, started once through Sentinel, carry on on the new primary with
no restart. Then: how many dispatches that had returned an id are missing on the new primary, with
``durability: replicated`` (none) and without it (counted)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from jobkit.bootstrap import open_client
from jobkit.config.jobs_file import load_project
from jobkit.config.settings import Settings
from tests.support import JOBKIT, start, wait_for
from tests.support.projects import REPLICATED_JOBS
from tests.support.replication import LagRelay, RedisNode, free_port, start_sentinels
from tests.support.tokens import SECRET, bearer

PASSWORD = "fail-over-pw"
MASTER = "jkmaster"
#: The replica's link lags this much behind the primary (a replica in another zone, or a busy one).
LINK_DELAY_S = 0.3
DISPATCH_THREADS = 4
LOAD_S = 3.0


@dataclass
class Cluster:
    primary: RedisNode
    replica: RedisNode
    relay: LagRelay
    sentinels: list[RedisNode]

    @property
    def env(self) -> dict[str, str]:
        return {
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels),
            "REDIS_SENTINEL_MASTER": MASTER,
            "REDIS_PASSWORD": PASSWORD,
            "REDIS_SENTINEL_PASSWORD": PASSWORD,
        }

    def wait_for_failover(self, timeout: float = 30) -> None:
        """Until the Sentinels name the replica as the master; a timeout says what each Sentinel logged."""
        try:
            wait_for(lambda: self.master_port() == self.replica.port, timeout=timeout, what="the Sentinels' failover")
        except AssertionError as exc:
            logs = []
            for sentinel in self.sentinels:
                path = sentinel.directory / "redis.log"
                lines = path.read_text(errors="replace").splitlines()[-15:] if path.exists() else ["(no log)"]
                logs.append(f"--- {sentinel.name} ---\n" + "\n".join(lines))
            raise AssertionError(f"{exc}\n" + "\n".join(logs)) from None

    def master_port(self) -> int:
        found = self.sentinels[0].client(password=PASSWORD).sentinel_get_master_addr_by_name(MASTER)
        assert isinstance(found, tuple), found
        return int(found[1])


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    auth = ("--requirepass", PASSWORD, "--masterauth", PASSWORD)
    primary = RedisNode(tmp_path, "primary", *auth)
    relay = LagRelay(primary.port, LINK_DELAY_S)
    replica = RedisNode(tmp_path, "replica", *auth, "--replicaof", "127.0.0.1", str(relay.port))
    probe = primary.client(password=PASSWORD)
    wait_for(lambda: probe.info("replication")["connected_slaves"] == 1, what="the replica to connect")
    sentinels = start_sentinels(tmp_path, MASTER, primary.port, PASSWORD)
    made = Cluster(primary, replica, relay, sentinels)
    wait_for(lambda: _sees_replica(made), timeout=20, what="the Sentinels to see the replica and each other")
    yield made
    relay.cut()
    for node in [*sentinels, replica, primary]:
        node.stop()


def _sees_replica(cluster: Cluster) -> bool:
    for sentinel in cluster.sentinels:
        master = sentinel.client(password=PASSWORD).sentinel_master(MASTER)
        assert isinstance(master, dict), master
        if int(master["num-slaves"]) < 1 or int(master["num-other-sentinels"]) < 2:
            return False
    return True


@dataclass
class Load:
    """Dispatch threads: every id that came back (acknowledged), every refusal, and when."""

    acknowledged: list[tuple[float, str]] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


def _dispatching(load: Load, settings: Settings, project_path: Path, task: str) -> None:
    client = open_client(settings, load_project(project_path))
    while not load.stop.is_set():
        try:
            ref = client.dispatch(task)
            load.acknowledged.append((time.monotonic(), ref.id))
        except Exception as exc:  # down, read-only, not replicated: not acknowledged, and the caller would retry
            load.failures.append((time.monotonic(), type(exc).__name__))
            time.sleep(0.02)


def _ids_on(port: int, namespace: str) -> set[str]:
    client = redis.Redis(host="127.0.0.1", port=port, password=PASSWORD)
    return {json.loads(raw)["message_id"] for raw in client.hvals(f"{namespace}:load.msgs")}


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("durability", ["replicated", "async"])
def test_kill_9_of_the_primary_under_load(
    durability: str,
    cluster: Cluster,
    env: dict[str, str],
    namespace: str,
    tmp_path: Path,
    redis_client: redis.Redis,
    processes: list[subprocess.Popen[str]],
) -> None:
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(REPLICATED_JOBS)
    schedules = tmp_path / "schedules.yaml"
    schedules.write_text(
        f'schedules:\n  tick: {{cron: "@every 1s", task: test:record, payload: {{key: "{namespace}:tick"}}}}\n'
    )
    api_port = free_port()
    child_env = {k: v for k, v in env.items() if k != "REDIS_URL"}
    child_env.update(
        cluster.env,
        JOBKIT_JOBS=str(jobs),
        JOBKIT_SCHEDULES=str(schedules),
        JOBKIT_SECRET=SECRET,
        JOBKIT_API_PORT=str(api_port),
    )
    # Given a worker (queue default only: the load queue is counted, not run), a scheduler and the API, through Sentinel
    worker = start(
        processes,
        [sys.executable, "-m", "dramatiq", "jobkit.actors", "--processes", "1", "--threads", "2",
         "--queues", "default"],
        child_env, tmp_path, tmp_path / "worker.log",
    )  # fmt: skip
    scheduler = start(processes, [JOBKIT, "scheduler"], child_env, tmp_path, tmp_path / "scheduler.log")
    api = start(processes, [JOBKIT, "api"], child_env, tmp_path, tmp_path / "api.log")
    http = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", headers=bearer(secret=SECRET), timeout=5)
    wait_for(lambda: _status(http, "/api/jobs/stats") == 200, timeout=30, what="the API")
    wait_for(lambda: int(redis_client.get(f"{namespace}:tick:count") or 0) >= 1, timeout=30, what="a first tick")

    # When dispatch threads run at full speed and the primary's host dies under them
    settings = Settings(
        sentinels=tuple(("127.0.0.1", s.port) for s in cluster.sentinels),
        sentinel_master=MASTER,
        sentinel_password=PASSWORD,
        sentinel_auth=PASSWORD,
        namespace=namespace,
        data_dir=tmp_path / "var",
    )
    load = Load()
    task = "test:safe_load" if durability == "replicated" else "test:fast_load"
    threads = [
        threading.Thread(target=_dispatching, args=(load, settings, jobs, task), daemon=True)
        for _ in range(DISPATCH_THREADS)
    ]
    for thread in threads:
        thread.start()
    time.sleep(LOAD_S)
    assert cluster.master_port() == cluster.primary.port
    killed_at = time.monotonic()
    cluster.primary.kill()
    cluster.relay.cut()  # what the link still held dies with the host
    cluster.wait_for_failover()
    promoted_at = time.monotonic()
    if durability == "async":  # async dispatches succeed again on the new primary (replicated ones need a replica)
        wait_for(lambda: any(t > promoted_at for t, _ in load.acknowledged), timeout=30, what="a dispatch after it")
    else:
        time.sleep(2)
    load.stop.set()
    for thread in threads:
        thread.join(10)

    # Then the worker, the scheduler and the API follow the new primary, each the same process as before
    ticks_before = int(redis_client.get(f"{namespace}:tick:count") or 0)
    assert _trigger(http, "test:record", {"key": f"{namespace}:after"}) == 202
    wait_for(lambda: redis_client.get(f"{namespace}:after:count") == b"1", timeout=30, what="the worker to run it")
    wait_for(
        lambda: int(redis_client.get(f"{namespace}:tick:count") or 0) >= ticks_before + 2,
        timeout=30,
        what="the scheduler to fire on the new primary",
    )
    assert _status(http, "/api/jobs/stats") == 200
    assert all(process.poll() is None for process in (worker, scheduler, api))

    # And what was acknowledged is there, or counted as lost
    present = _ids_on(cluster.replica.port, namespace)
    acknowledged = [task_id for _, task_id in load.acknowledged]
    lost = [task_id for task_id in acknowledged if task_id not in present]
    by_old_primary = [task_id for t, task_id in load.acknowledged if t < promoted_at]
    first_after = min((t for t, _ in load.acknowledged if t > promoted_at), default=None)
    figures = {
        "durability": durability,
        "acknowledged": len(acknowledged),
        "acknowledged_by_the_old_primary": len(by_old_primary),
        "lost": len(lost),
        "refused": dict(Counter(name for _, name in load.failures)),
        "failover_s": round(promoted_at - killed_at, 2),
        "first_dispatch_after_promotion_s": round(first_after - promoted_at, 2) if first_after else None,
    }
    print(f"fail-over figures: {figures}")
    assert len(by_old_primary) > 0
    if durability == "replicated":
        assert lost == [], figures
    else:
        # Redis replicates asynchronously: what the link still held when the host died is gone, ids returned and all
        assert lost, figures
        assert set(lost) <= set(by_old_primary), figures


def _status(http: httpx.Client, path: str) -> int:
    try:
        return http.get(path).status_code
    except httpx.HTTPError:
        return 0


def _trigger(http: httpx.Client, task: str, payload: dict[str, str]) -> int:
    deadline = time.monotonic() + 30
    while True:
        try:
            status = http.post(f"/api/jobs/trigger/{task}", json=payload).status_code
        except httpx.HTTPError:
            status = 0
        if status == 202 or time.monotonic() > deadline:
            return status
        time.sleep(0.1)
