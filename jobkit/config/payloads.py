"""Payload checks: does a payload fit a task's handler, and is it plain JSON? Pure functions on the model.

Every enqueue runs them through the message builder (``jobkit.engine.messages``); the schedules.yaml loader runs
them when the file loads, so a payload the handler cannot take is refused before any scheduler fires it.
"""

from __future__ import annotations

import inspect
import json
import math
from contextlib import suppress
from typing import Any

import msgspec

from jobkit.config.model import TaskSpec
from jobkit.errors import PayloadError, did_you_mean

__all__ = ["MAX_DEPTH", "check_payload", "format_size", "json_problem", "json_size"]

#: How deeply lists and mappings may nest in a payload (a deeper one is refused before anything recurses over it).
MAX_DEPTH = 32


def json_problem(value: Any, path: str, depth: int = 0) -> str | None:
    """Where ``value`` stops being plain JSON (tuples count as lists) or nests deeper than :data:`MAX_DEPTH`, or
    None."""
    if value is None or isinstance(value, bool | int | str):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} is {value!r}, which JSON cannot carry"
    if isinstance(value, list | tuple | dict) and depth >= MAX_DEPTH:
        return f"{path} nests lists or mappings more than {MAX_DEPTH} levels deep"
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if found := json_problem(item, f"{path}[{index}]", depth + 1):
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has a key {key!r} that is not text"
            if found := json_problem(item, f"{path}.{key}", depth + 1):
                return found
        return None
    return f"{path} is a {type(value).__name__}, which is not JSON (send text, numbers, lists or mappings)"


#: The shape of each signature dispatch has checked payloads against, by identity (the builder keeps one signature
#: object per task; hashing a Signature hashes every parameter, which cost more than reading it again).
_SHAPES: dict[int, tuple[inspect.Signature, tuple[bool, tuple[str, ...], tuple[str, ...]]]] = {}


def _shape(signature: inspect.Signature) -> tuple[bool, tuple[str, ...], tuple[str, ...]]:
    """What a handler's signature takes: any keyword, the named fields, and the required ones, read once per
    signature object (a dispatch checks every payload against it)."""
    found = _SHAPES.get(id(signature))
    if found is not None and found[0] is signature:
        return found[1]
    params = signature.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = tuple(n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    required = tuple(n for n in named if params[n].default is params[n].empty)
    shape = (takes_any, named, required)
    if len(_SHAPES) < 4096:  # the signatures of a project's tasks: a handful; never grows without bound
        _SHAPES[id(signature)] = (signature, shape)
    return shape


def check_payload(task: TaskSpec, signature: inspect.Signature, payload: dict[str, Any]) -> None:
    """Refuse a payload that the handler cannot take, naming the task and the field."""
    takes_any, named, required = _shape(signature)
    for key in payload:
        if key not in named and not takes_any:
            hint = did_you_mean(key, set(named))
            accepted = ", ".join(named) or "no fields"
            raise PayloadError(
                f"{task.name}: unknown payload field {key!r} ({hint or 'the handler takes ' + accepted})"
            )
    missing = [n for n in required if n not in payload]
    if missing:
        raise PayloadError(f"{task.name}: missing payload field {missing[0]!r} (required: {', '.join(missing)})")
    for key, value in payload.items():
        if problem := json_problem(value, key):
            raise PayloadError(f"{task.name}: payload field {problem}")


_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_fast = msgspec.json.Encoder().encode


def json_size(payload: dict[str, Any]) -> int:
    """The payload's size as compact UTF-8 JSON, in bytes (msgspec's: a tenth of the time of json.dumps, a byte less
    for a float with an exponent; json.dumps for what msgspec refuses, an integer beyond 64 bits say)."""
    if not payload:
        return 2  # {}
    with suppress(TypeError, ValueError, OverflowError, msgspec.EncodeError):
        return len(_fast(payload))
    return len(_compact(payload).encode())


def format_size(size: int) -> str:
    """``1048576`` -> ``1 MiB``, ``1536`` -> ``1.5 KiB``."""
    for unit, step in (("MiB", 1024**2), ("KiB", 1024)):
        if size >= step:
            return f"{size / step:.3g} {unit}"
    return f"{size} bytes"
