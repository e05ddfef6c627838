"""How jobkit's processes write log lines: text for a person (the default), or one JSON object a line for a log
shipper (``JOBKIT_LOG_FORMAT=json``).

Every process jobkit starts calls one of two functions at boot. Processes jobkit owns (``jobkit up``, ``jobkit
worker``'s supervisor, the scheduler, the API) call :func:`configure_logging`, which replaces the root logger's
handlers. A Dramatiq worker process has been set up by Dramatiq's CLI before jobkit's code runs (its handler writes
to a pipe its parent reads): :func:`adopt_worker_logging`, called from the worker's boot, only changes the format
of the handlers it finds, so plain ``dramatiq jobkit.actors`` keeps Dramatiq's own behaviour in text mode.

Fields of a JSON line: ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``message``, ``pid``,
``thread``, ``exception`` (the traceback, when there is one), and whatever a call passed in ``extra=`` (the task
log adds ``task``, ``task_id``, ``outcome`` and ``duration_ms``).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

__all__ = [
    "LOG_FORMATS",
    "TEXT_FORMAT",
    "JsonFormatter",
    "LogFormat",
    "adopt_worker_logging",
    "configure_logging",
]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
#: The text format of the processes jobkit owns (the scheduler, the API); Dramatiq's workers keep Dramatiq's.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What every LogRecord carries; anything else on a record came from ``extra=`` and goes into the JSON line.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (a message's own line breaks are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
            "thread": record.threadName,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class _JobkitHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` installs (so a later call, or a forked worker, recognises it)."""


def _formatter(log_format: LogFormat, text_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(text_format)


def configure_logging(
    log_format: LogFormat, *, level: int = logging.INFO, text_format: str = TEXT_FORMAT, stream: TextIO | None = None
) -> None:
    """Root logging of a process jobkit owns: one handler on ``stream`` (stderr), in ``log_format``."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
        handler.close()
    handler = _JobkitHandler(stream or sys.stderr)
    handler.setFormatter(_formatter(log_format, text_format))
    root.addHandler(handler)
    root.setLevel(level)


def adopt_worker_logging(log_format: LogFormat) -> None:
    """In a Dramatiq worker process: JSON lines from the handlers Dramatiq's CLI set up (text: nothing changes).

    With ``--skip-logging`` there are none, and a JSON handler on stderr is added; a handler inherited from the
    parent (``jobkit worker``'s shim configures the Dramatiq main process) is pointed at this process's stderr, which
    Dramatiq's CLI has made the pipe its main process reads.
    """
    if log_format != "json":
        return
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(_JobkitHandler(sys.stderr))
        root.setLevel(logging.INFO)
    for handler in root.handlers:
        if isinstance(handler, _JobkitHandler) and handler.stream is not sys.stderr:
            handler.setStream(sys.stderr)
        handler.setFormatter(JsonFormatter())
