"""Requests that find the revocation list stale at the same moment share one read of Redis."""

from __future__ import annotations

import asyncio
import threading

import redis

from jobkit.api.security import _refreshed
from jobkit.services.auth import Revocations
from jobkit.store.keys import Keys


class _Counted(Revocations):
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        super().__init__(client, keys)
        self.reads = 0
        self.release = threading.Event()

    def refresh(self) -> None:
        self.reads += 1
        self.release.wait(5)  # the read is slow: every request arrives while it is out
        super().refresh()


def test_fifty_requests_that_find_the_list_stale_share_one_read_and_a_canceled_one_spares_it(
    redis_client: redis.Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    revocations = _Counted(redis_client, keys)
    redis_client.hset(keys.revoked_tokens, "revoked-id", 2**40)

    async def scenario() -> None:
        waiters = [asyncio.ensure_future(_refreshed(revocations)) for _ in range(50)]
        await asyncio.sleep(0)  # all of them are waiting now
        waiters[0].cancel()  # a client that went away
        await asyncio.sleep(0)
        revocations.release.set()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError)
        assert results[1:] == [None] * 49

    # In a thread of its own: the test process may already run an event loop in this one (other tests' clients)
    runner = threading.Thread(target=lambda: asyncio.run(scenario()))
    runner.start()
    runner.join(10)
    assert not runner.is_alive()
    assert revocations.reads == 1
    assert revocations.revoked("revoked-id") and not revocations.stale()
