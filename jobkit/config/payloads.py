"""Payload checks: does a payload fit a task's handler, and is it plain JSON? Pure functions on the model.

Every enqueue runs them through the message builder (``jobkit.engine.messages``); the schedules.yaml loader runs
them when the file loads, so a payload the handler cannot take is refused before any scheduler fires it.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from jobkit.config.model import TaskSpec
from jobkit.errors import PayloadError, did_you_mean

__all__ = ["check_payload", "json_problem"]


def json_problem(value: Any, path: str) -> str | None:
    """Where ``value`` stops being plain JSON (tuples count as lists), or None."""
    if value is None or isinstance(value, bool | int | str):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} is {value!r}, which JSON cannot carry"
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if found := json_problem(item, f"{path}[{index}]"):
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has a key {key!r} that is not text"
            if found := json_problem(item, f"{path}.{key}"):
                return found
        return None
    return f"{path} is a {type(value).__name__}, which is not JSON (send text, numbers, lists or mappings)"


def check_payload(task: TaskSpec, signature: inspect.Signature, payload: dict[str, Any]) -> None:
    """Refuse a payload that the handler cannot take, naming the task and the field."""
    params = signature.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = {n: p for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for key in payload:
        if key not in named and not takes_any:
            hint = did_you_mean(key, set(named))
            accepted = ", ".join(named) or "no fields"
            raise PayloadError(
                f"{task.name}: unknown payload field {key!r} ({hint or 'the handler takes ' + accepted})"
            )
    missing = [n for n, p in named.items() if p.default is p.empty and n not in payload]
    if missing:
        raise PayloadError(f"{task.name}: missing payload field {missing[0]!r} (required: {', '.join(missing)})")
    for key, value in payload.items():
        if problem := json_problem(value, key):
            raise PayloadError(f"{task.name}: payload field {problem}")
