"""Reports each workflow member's start and outcome to :class:`~jobkit.engine.workflows.WorkflowRuns`."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq import Middleware

from jobkit.engine.workflows import WorkflowRuns

__all__ = ["WorkflowSteps"]


class WorkflowSteps(Middleware):
    """Records each step's outcome in its run's state and starts the next step when one completes. Its after hooks
    run before the retry middleware's (Dramatiq calls after hooks in reverse), so a final failure is known here only
    in ``after_nack``."""

    def __init__(self, runs: WorkflowRuns) -> None:
        self.runs = runs

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.runs.member_started(message)

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        if exception is None:
            self.runs.member_completed(message, result)
        else:
            self.runs.member_retrying(message)

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        self.runs.member_archived(message)
