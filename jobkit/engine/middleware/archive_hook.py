"""Calls back when a worker archives a task (its final failure), e.g. to fire ``when: archived`` alert rules."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq import Middleware

__all__ = ["ArchiveHook"]

log = logging.getLogger("jobkit")


class ArchiveHook(Middleware):
    """Runs ``on_archived(message)`` after a task is archived. The callback never fails the worker: its errors are
    logged."""

    def __init__(self, on_archived: Callable[[Any], None]) -> None:
        self.on_archived = on_archived

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        try:
            self.on_archived(message)
        except Exception as exc:
            log.warning("the archive hook failed for task %s: %s", message.message_id, exc)
