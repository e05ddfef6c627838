"""Durations as users write them (``250ms``, ``30s``, ``5m``, ``1h30m``, ``1d``) <-> :class:`datetime.timedelta`.

This is the one place where units are parsed; everything else holds ``timedelta``.
"""

from __future__ import annotations

import re
from datetime import timedelta

from jobkit.errors import DurationError

__all__ = ["DurationError", "format_duration", "parse_duration"]

_UNITS: dict[str, timedelta] = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
}
_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:ms|s|m|h|d))+")


def parse_duration(text: str | int | float) -> timedelta:
    """Parse ``1h30m``-style text; a bare number counts as seconds (``0`` means zero)."""
    if isinstance(text, bool):
        raise DurationError(f"expected a duration like 30s, 5m or 1h30m, found {text!r}")
    try:
        if isinstance(text, int | float):
            if text < 0:
                raise DurationError(f"a duration cannot be negative, found {text!r}")
            return timedelta(seconds=text)
        compact = text.strip().replace(" ", "")
        if compact.isdigit():
            return timedelta(seconds=int(compact))
        if not _WHOLE.fullmatch(compact):
            raise DurationError(f"expected a duration like 250ms, 30s, 5m, 1h30m or 1d, found {text!r}")
        total = timedelta()
        for amount, unit in _PART.findall(compact):
            total += int(amount) * _UNITS[unit]
        return total
    except (OverflowError, ValueError) as exc:  # timedelta's own limit (about 2.7 million years), or NaN
        if isinstance(exc, DurationError):
            raise
        raise DurationError(f"{text!r} is out of range: a duration is finite and at most 999999999 days") from None


def format_duration(value: timedelta) -> str:
    """The shortest ``1h30m``-style text for ``value`` (``0s`` for zero)."""
    remaining_ms = round(value.total_seconds() * 1000)
    if remaining_ms == 0:
        return "0s"
    parts: list[str] = []
    for unit in ("d", "h", "m", "s", "ms"):
        step = round(_UNITS[unit].total_seconds() * 1000)
        count, remaining_ms = divmod(remaining_ms, step)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
