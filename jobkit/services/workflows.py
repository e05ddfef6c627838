"""Workflows built in Python: ``chain(("a:fetch", {"n": 3}), group("b:x", "b:y"), ("c:sum", {"v": "{{ prev }}"}))``.

These build the same :class:`~jobkit.config.model.WorkflowSpec` a ``workflows:`` entry of jobs.yaml gives; runs are
started and moved along by :mod:`jobkit.engine.workflows`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobkit.config.model import WorkflowSpec, WorkflowStep
from jobkit.errors import DispatchError

__all__ = ["StepItem", "chain_spec", "group"]

StepItem = str | tuple[str, Mapping[str, Any]] | WorkflowStep


def _task_item(item: StepItem) -> tuple[str, Mapping[str, Any]]:
    if isinstance(item, str):
        return item, {}
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], Mapping):
        return item[0], dict(item[1])
    raise DispatchError(f"a step is a task name, a (task, payload) pair or a group, not {item!r}")


def group(*tasks: str | tuple[str, Mapping[str, Any]]) -> WorkflowStep:
    """Tasks run in parallel as one step; the next step's ``prev`` is the list of their results."""
    if len(tasks) < 2:
        raise DispatchError("a group needs at least 2 tasks")
    return WorkflowStep(tuple(_task_item(task) for task in tasks), group=True)


def chain_spec(*steps: StepItem, name: str = "chain") -> WorkflowSpec:
    """The workflow of ``steps`` in order: each a task name, a ``(task, payload)`` pair or a :func:`group`."""
    if not steps:
        raise DispatchError("a chain needs at least one step")
    built = tuple(step if isinstance(step, WorkflowStep) else WorkflowStep((_task_item(step),)) for step in steps)
    return WorkflowSpec(name, built)
