"""Plain Dramatiq actors with no jobs.yaml entry, as a team moving onto jobkit has them. Imported by the worker
(``dramatiq jobkit.actors tests.handlers.plain``), so ``@dramatiq.actor`` declares them on jobkit's broker."""

from __future__ import annotations

import json
import os
import time

import dramatiq

from tests.handlers import _redis


@dramatiq.actor(queue_name="default", max_retries=0)
def fleet_record(key: str, n: int) -> None:
    """Records ``[n, start time]`` under ``key``."""
    _redis(os.environ["JOBKIT_TEST_REDIS_URL"]).rpush(key, json.dumps([n, time.time()]))
