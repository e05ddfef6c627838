"""Every error jobkit raises on purpose. A docstring is the default message."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "DispatchError",
    "DuplicateTask",
    "JobkitError",
    "PayloadError",
    "Problem",
    "SettingsError",
    "SkipRetry",
    "TaskNotFound",
    "TaskStateError",
    "UnknownQueue",
    "UnknownTask",
]


class JobkitError(Exception):
    """Something went wrong in jobkit."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class SkipRetry(Exception):
    """A permanent failure: the task is archived at once, with no retry."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in a configuration file, with where it is."""

    file: str
    line: int
    column: int
    path: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class ConfigError(JobkitError):
    """The configuration has problems; fix each one listed."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(problem) for problem in self.problems))


class SettingsError(JobkitError):
    """An environment variable has a value jobkit cannot use."""


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
        super().__init__(message)


class PayloadError(DispatchError):
    """The payload does not fit the task's handler."""


class TaskNotFound(JobkitError):
    """No task with that id in that queue (it may have been deleted, or its retention ran out)."""


class TaskStateError(JobkitError):
    """The operation is not allowed in the task's current state."""
