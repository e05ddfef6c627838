"""An evicting Redis would delete queued jobs to make room: workers, the API and the scheduler say so loudly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from jobkit.services.client import Client
from jobkit.services.redis_policy import check_eviction_policy


@pytest.fixture
def evicting(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    redis_client.config_set("maxmemory-policy", "allkeys-lru")
    yield redis_client
    redis_client.config_set("maxmemory-policy", "noeviction")


def test_the_embedded_redis_never_evicts(client: Client) -> None:
    assert client.redis.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    assert check_eviction_policy(client.redis, "worker") is None


def test_an_evicting_redis_gets_a_loud_warning_that_says_what_would_be_lost(
    client: Client, evicting: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    warning = check_eviction_policy(client.redis, "api")

    assert warning is not None and "maxmemory-policy is 'allkeys-lru'" in warning
    assert "DELETE keys" in warning and "queued, scheduled and archived jobs" in warning
    assert [r.levelname for r in caplog.records if r.getMessage() == warning] == ["WARNING"]
