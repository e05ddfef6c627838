"""The handler of the example task ``example:hello`` in jobs.yaml (written by ``jobkit init``).

Dispatch it with ``jobkit dispatch example:hello --payload '{"name": "Ann"}'``. Each payload field arrives as a
keyword argument, and jobkit checks every dispatch against this signature. Raise ``jobkit.SkipRetry("why")`` for a
permanent failure; any other exception retries according to the task's policy (jobkit's README, "Add a job").
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def hello(name: str = "world") -> None:
    log.info("hello, %s", name)
