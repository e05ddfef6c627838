"""Sensitive fields on the way out: payloads for readers, and Dramatiq's own log lines, show "***".

Values are sealed at rest already (:mod:`jobkit.engine.sealing`); this makes sure that what is shown never carries
them, sealed or clear, for any reader or role.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from dramatiq.broker import MessageProxy
from dramatiq.message import Message

from jobkit.config.model import Project
from jobkit.engine.sealing import redact

__all__ = ["RedactMessages", "redacted_payload"]


def redacted_payload(project: Project, task: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` of ``task`` as any reader may see it."""
    spec = project.tasks.get(task)
    return redact(payload, spec.sensitive) if spec is not None and spec.sensitive else dict(payload)


class RedactMessages(logging.Filter):
    """A filter for Dramatiq's worker logger: a message it logs (``Failed to process message email:send(token=...)
    with unhandled exception``) is rendered with its sensitive fields as "***". One filter per logger, whatever
    the number of projects a process opens: it knows every sensitive path they declared."""

    _lock = threading.Lock()
    _paths: dict[str, tuple[str, ...]] = {}
    _installed: set[str] = set()

    @classmethod
    def install(cls, project: Project, logger: str = "dramatiq.worker.WorkerThread") -> None:
        with cls._lock:
            for task in project.tasks.values():
                if task.sensitive:
                    cls._paths[task.name] = tuple(dict.fromkeys((*cls._paths.get(task.name, ()), *task.sensitive)))
            if logger not in cls._installed:
                logging.getLogger(logger).addFilter(cls())
                cls._installed.add(logger)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, MessageProxy | Message) for a in record.args):
            record.args = tuple(self._render(a) if isinstance(a, MessageProxy | Message) else a for a in record.args)
        return True

    def _render(self, message: Any) -> str:
        paths = self._paths.get(message.actor_name, ())
        kwargs = redact(message.kwargs, paths) if paths else message.kwargs
        params = ", ".join([*(repr(arg) for arg in message.args), *(f"{k}={v!r}" for k, v in kwargs.items())])
        return f"{message.actor_name}({params})"
