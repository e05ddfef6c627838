"""Every error jobkit raises on purpose, in one tree under :class:`JobkitError`. A docstring is the default message.

Some also derive from a builtin error where callers (or Dramatiq's retry rules) match on that kind:
``DurationError`` is a ``ValueError``, ``MailUnavailable`` a ``ConnectionError``. Imports nothing but the standard
library, so every layer can raise these.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from difflib import get_close_matches
from typing import Any

__all__ = [
    "AuthError",
    "BadMessage",
    "ConfigError",
    "Conflict",
    "CronError",
    "DispatchError",
    "DuplicateTask",
    "DurationError",
    "ExportError",
    "ExportUnavailable",
    "ImportProblem",
    "InvalidRequest",
    "JobkitError",
    "MailUnavailable",
    "NotReplicated",
    "PayloadError",
    "PeriodiqError",
    "Problem",
    "ResultMissing",
    "ResultTimeout",
    "ScheduleError",
    "SettingsError",
    "SkipRetry",
    "TaskCanceled",
    "TaskFailed",
    "TaskNotFound",
    "TaskStateError",
    "TemplateError",
    "TooBusy",
    "UnknownQueue",
    "UnknownTask",
    "UsageError",
    "WebhookUnavailable",
    "did_you_mean",
]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``did you mean 'x'?`` for the closest of ``choices``, or "" when none is close."""
    close = get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


class JobkitError(Exception):
    """Something went wrong in jobkit."""

    def __init__(self, message: str | None = None, hint: str = "") -> None:
        #: What is wrong, without the hint.
        self.message = message or (self.__doc__ or "").strip()
        #: How to fix it ("did you mean ...", an example); empty when there is nothing to add.
        self.hint = hint
        super().__init__(self.message)


class SkipRetry(JobkitError):
    """A permanent failure: the task is archived at once, with no retry."""


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in a configuration file, with where it is (line 0: the file as a whole, no position)."""

    file: str
    line: int
    column: int
    path: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


# -- configuration ---------------------------------------------------------------------------------------------------
class ConfigError(JobkitError):
    """The configuration has problems; fix each one listed."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(problem) for problem in self.problems))


class SettingsError(JobkitError):
    """An environment variable has a value jobkit cannot use."""


class DurationError(JobkitError, ValueError):
    """Not a duration: write a number with a unit, like 250ms, 30s, 5m, 1h30m or 1d."""


class CronError(JobkitError, ValueError):
    """A schedule spec that jobkit refuses."""

    def __init__(self, message: str, hint: str = "", offset: int = 0) -> None:
        super().__init__(message, hint)
        #: Where in the spec text the problem starts (0-based), so a file error can point at the field.
        self.offset = offset


class TemplateError(JobkitError, ValueError):
    """A payload template refers to something that is not there."""


class ImportProblem(JobkitError):
    """A handler or exception named in jobs.yaml cannot be imported."""


# -- dispatching -----------------------------------------------------------------------------------------------------
class DispatchError(JobkitError):
    """The task cannot be dispatched as asked."""


class UnknownTask(DispatchError):
    """No task of that name is declared in jobs.yaml."""


class UnknownQueue(DispatchError):
    """No queue of that name is declared in jobs.yaml."""


class DuplicateTask(DispatchError):
    """The same task with the same unique key is already queued or running."""

    def __init__(self, message: str | None = None, *, existing_id: str = "") -> None:
        #: Id of the task that holds the lock (the API answers 409 with it).
        self.existing_id = existing_id
        #: For ``dispatch_many``: what each payload became (None where refused).
        self.refs: list[Any] = []
        super().__init__(message)


class PayloadError(DispatchError):
    """The payload does not fit the task's handler."""


class ScheduleError(DispatchError):
    """The schedule cannot be created as asked."""


class PeriodiqError(JobkitError):
    """A periodiq actor cannot be scheduled by jobkit."""


# -- inspecting and operating ----------------------------------------------------------------------------------------
class TaskNotFound(JobkitError):
    """No task with that id in that queue (it may have been deleted, or its retention ran out)."""


class TaskStateError(JobkitError):
    """The operation is not allowed in the task's current state."""


# -- results ---------------------------------------------------------------------------------------------------------
class TaskFailed(JobkitError):
    """The task was archived: its retries are spent or its error is permanent. ``last_error`` is its final error."""

    def __init__(self, message: str, last_error: str | None = None) -> None:
        super().__init__(message)
        self.last_error = last_error


class TaskCanceled(JobkitError):
    """The task was canceled; ``by`` names who canceled it."""

    def __init__(self, message: str, by: str | None = None) -> None:
        super().__init__(message)
        self.by = by


class ResultMissing(JobkitError):
    """The task completed but kept no result (its retention is 0, its result was not JSON or too large, or its
    retention ran out)."""


class ResultTimeout(JobkitError, TimeoutError):
    """The task did not finish within the time ``result()`` was given to wait."""


class AuthError(JobkitError):
    """The bearer token is missing or not valid."""


class InvalidRequest(JobkitError):
    """Well-formed input the service cannot act on (a payload field the task does not take, a bad duration)."""


class Conflict(JobkitError):
    """The operation is not allowed in the current state."""


class TooBusy(JobkitError):
    """This process is already serving as many of these requests as it takes at once; try again shortly."""


class UsageError(JobkitError):
    """A value on the command line cannot be used."""


# -- built-in tasks --------------------------------------------------------------------------------------------------
class ExportError(JobkitError, ValueError):
    """The export cannot run as asked; retrying will not help."""


class NotReplicated(JobkitError, ConnectionError):
    """No replica acknowledged the task in time (durability: replicated): the primary has it and runs it, unless the
    primary fails over now; dispatch again only if a second run is acceptable."""


class ExportUnavailable(JobkitError, ConnectionError):
    """The database could not run the export now (down, locked, too busy); a later attempt may succeed."""


class BadMessage(JobkitError, ValueError):
    """The message can never be sent as it is (retrying will not help)."""


class MailUnavailable(JobkitError, ConnectionError):
    """The mail server could not take the message now; a later attempt may succeed."""

    def __init__(self, message: str | None = None, hint: str = "", *, retry_after: timedelta | None = None) -> None:
        super().__init__(message, hint)
        #: How long the server asked us to wait (an HTTP ``Retry-After``): the retry middleware schedules the next
        #: attempt no earlier than that, whatever the task's backoff says. None: the backoff alone decides.
        self.retry_after = retry_after


class WebhookUnavailable(JobkitError, ConnectionError):
    """The webhook did not take the notification now (5xx, timeout, connection error); a retry may succeed."""
