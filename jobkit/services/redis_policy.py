"""A job queue's Redis must never evict: with any ``maxmemory-policy`` but ``noeviction``, Redis deletes keys to make
room when it is full, and those keys are queued jobs. Workers, the API and the scheduler check at start and warn."""

from __future__ import annotations

import logging
from typing import cast

import redis

__all__ = ["SAFE_POLICY", "check_eviction_policy"]

log = logging.getLogger("jobkit")

SAFE_POLICY = "noeviction"


def check_eviction_policy(client: redis.Redis, who: str) -> str | None:
    """The warning ``who`` (worker, api, scheduler) logs when Redis may evict keys, or None when it may not."""
    try:
        info = cast(dict[str, object], client.info("memory"))
    except redis.RedisError as exc:
        log.warning("%s: could not read Redis's maxmemory-policy (%s)", who, exc)
        return None
    policy = str(info.get("maxmemory_policy", SAFE_POLICY))
    if policy == SAFE_POLICY:
        return None
    warning = (
        f"{who}: Redis's maxmemory-policy is {policy!r}: when Redis fills up it will DELETE keys to make room, and "
        "those keys are queued, scheduled and archived jobs, lost without a trace. Set `maxmemory-policy noeviction` "
        "(full Redis then refuses new jobs with an error instead) and give it the memory it needs."
    )
    log.warning(warning)
    return warning
