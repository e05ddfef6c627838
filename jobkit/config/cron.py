"""Schedule specs (``0 2 * * MON``, ``@daily 3:00``, ``@every 90m`` …) -> triggers that give the next fire time.

Fire times are whole epoch milliseconds, so every scheduler process computes exactly the same ones.

Why not APScheduler 3.11's ``CronTrigger.from_crontab``: it reads day-of-week ``0`` as Monday and refuses ``7``,
combines day-of-month and day-of-week with AND (cron uses OR when both are restricted), and fires a ``30 2 * * *``
entry twice on a DST fall-back day. Cron expressions are computed by ``cronsim`` instead, which follows Debian cron
on all three points (tests/unit/test_cron.py pins each case). ``@every`` needs no library: it is anchored to the Unix
epoch, so the n-th fire is ``n * interval`` whoever computes it.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError

from jobkit.durations import DurationError, format_duration, parse_duration
from jobkit.errors import CronError, did_you_mean

__all__ = [
    "DESCRIPTORS",
    "CronError",
    "CronTrigger",
    "EveryTrigger",
    "OnceTrigger",
    "Trigger",
    "load_timezone",
    "parse_spec",
]

#: The ``@`` shorthands and the cron expression each stands for (Vixie cron's table).
DESCRIPTORS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
DAY_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
MONTH_NAMES = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_FIELDS = [  # name, lowest, highest, names (index + offset = value)
    ("minute", 0, 59, [], 0),
    ("hour", 0, 23, [], 0),
    ("day-of-month", 1, 31, [], 0),
    ("month", 1, 12, MONTH_NAMES, 1),
    ("day-of-week", 0, 7, DAY_NAMES, 0),
]
_FORMS = "5-field cron, @hourly, @daily, @weekly, @monthly, @yearly, @daily H:MM or @every <duration>"
_TIME_OF_DAY = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
MIN_EVERY = timedelta(seconds=1)
_UTC = ZoneInfo("UTC")


def load_timezone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; raises :class:`CronError` with a "did you mean" when it does not exist."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        hint = did_you_mean(name, available_timezones()) or "an IANA name like UTC or Europe/Berlin"
        raise CronError(f"unknown timezone {name!r}", hint) from None


def parse_time_of_day(text: str) -> tuple[int, int]:
    """``"9:00"`` / ``"09:00"`` -> (9, 0)."""
    match = _TIME_OF_DAY.fullmatch(text.strip())
    if not match:
        raise CronError(f"expected a time of day H:MM, found {text!r}", "between 0:00 and 23:59, e.g. 02:30")
    return int(match.group(1)), int(match.group(2))


class Trigger(ABC):
    """Gives the fire times of one entry as epoch milliseconds."""

    @abstractmethod
    def next_after(self, after_ms: int) -> int | None:
        """The first fire time strictly after ``after_ms``, or None when there is none."""


@dataclass(frozen=True)
class EveryTrigger(Trigger):
    interval_ms: int
    """Fires at every whole multiple of this since the Unix epoch (so all processes agree on the times)."""

    def next_after(self, after_ms: int) -> int:
        return (after_ms // self.interval_ms + 1) * self.interval_ms


@dataclass(frozen=True)
class OnceTrigger(Trigger):
    at_ms: int
    """The one fire time."""

    def next_after(self, after_ms: int) -> int | None:
        return self.at_ms if self.at_ms > after_ms else None


@dataclass(frozen=True)
class CronTrigger(Trigger):
    expression: str
    """Five fields, already checked by :func:`parse_spec`; computed with Debian cron's rules."""
    zone: ZoneInfo = _UTC
    """The wall clock the fields are read in."""

    def next_after(self, after_ms: int) -> int | None:
        start = datetime.fromtimestamp(after_ms / 1000, UTC)
        if self.zone.key != "UTC":
            start = start.astimezone(self.zone)
        # cronsim walks local wall time; on a fall-back day it may answer the first 02:30 when asked from inside the
        # repeated hour, so skip anything that is not strictly later.
        for fire in CronSim(self.expression, start):
            fire_ms = int(fire.timestamp() * 1000)
            if fire_ms > after_ms:
                return fire_ms
        return None  # pragma: no cover - cronsim stops after 50 years without a match


def _field_value(text: str, index: int, offset: int) -> int:
    name, low, high, names, base = _FIELDS[index]
    upper = text.upper()
    if names and upper.isalpha():
        if upper in names:
            return names.index(upper) + base
        kind = "day" if index == 4 else "month"
        hint = did_you_mean(upper, names) or f"use {names[0]}..{names[-1]} or numbers {low}-{high}"
        raise CronError(f"unknown {kind} name {text!r} in the {name} field", hint, offset)
    if not text.isdigit():
        hint = f"{low}-{high}" + ("; Quartz-style ?, W and # are not supported" if set(text) & set("?W#") else "")
        raise CronError(f"{name} field: expected a number, found {text!r}", hint, offset)
    value = int(text)
    if not low <= value <= high:
        hint = "0 and 7 are both Sunday" if index == 4 else f"{name} goes from {low} to {high}"
        raise CronError(f"{name} {value} is out of range {low}-{high}", hint, offset)
    return value


def _check_field(text: str, index: int, offset: int) -> None:
    name = _FIELDS[index][0]
    position = offset
    for item in text.split(","):
        if item == "":
            raise CronError(f"{name} field: empty item in {text!r}", "remove the extra comma", position)
        if index == 2 and item == "L":
            position += len(item) + 1
            continue
        base, slash, step = item.partition("/")
        if slash and (not step.isdigit() or int(step) == 0):
            raise CronError(f"{name} field: step {step!r} must be a whole number >= 1", "e.g. */15", position)
        if base != "*":
            start_text, dash, end_text = base.partition("-")
            start = _field_value(start_text, index, position)
            if dash:
                end = _field_value(end_text, index, position + len(start_text) + 1)
                if end < start:
                    raise CronError(f"{name} range {base!r} runs backwards", "write the lower bound first", position)
        position += len(item) + 1


def _check_cron(expression: str, offset: int = 0) -> str:
    fields = expression.split()
    if len(fields) != 5:
        hint = "minute hour day-of-month month day-of-week"
        if len(fields) in (6, 7):
            hint += "; seconds and years are not supported"
        raise CronError(f"expected 5 fields, found {len(fields)}", hint, offset)
    position = offset
    for index, field in enumerate(fields):
        position = expression.index(field, position - offset) + offset
        _check_field(field.upper() if index >= 3 else field, index, position)
        position += len(field)
    normalized = " ".join(fields).upper()
    try:
        CronSim(normalized, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError:
        raise CronError(
            f"{expression!r} never fires: no chosen month has that day", "check day-of-month against the months", offset
        ) from None
    return normalized


def parse_spec(text: str, zone: ZoneInfo | None = None, *, allow_at: bool = False) -> Trigger:
    """Turn one spec into its trigger; raises :class:`CronError` saying what is wrong and how to write it.

    ``@at <ISO time>`` (one-time entries made through the API) is accepted only with ``allow_at``."""
    zone = zone or _UTC
    stripped = text.strip()
    lead = len(text) - len(text.lstrip())
    if not stripped:
        raise CronError("empty schedule", _FORMS)
    if stripped.startswith("@"):
        word, _, rest = stripped.partition(" ")
        rest = rest.strip()
        lower = word.lower()
        if lower == "@every":
            if not rest:
                raise CronError("@every needs a duration", "e.g. @every 90m", lead)
            try:
                interval = parse_duration(rest)
            except DurationError:
                raise CronError(
                    f"@every: expected a duration, found {rest!r}", "like 30s, 5m, 1h30m or 1d", lead
                ) from None
            if interval < MIN_EVERY:
                raise CronError(f"@every {rest}: the interval must be at least 1s", "", lead)
            return EveryTrigger(round(interval.total_seconds() * 1000))
        if lower == "@at" and allow_at:
            try:
                at = datetime.fromisoformat(rest)
            except ValueError:
                raise CronError(f"@at: expected an ISO time, found {rest!r}") from None
            return OnceTrigger(round(at.timestamp() * 1000))
        if lower not in DESCRIPTORS:
            hint = did_you_mean(lower, set(DESCRIPTORS) | {"@every"}) or f"expected {_FORMS}"
            raise CronError(f"unknown descriptor {word!r}", hint, lead)
        if rest:
            if lower != "@daily":
                raise CronError(f"{word} takes no argument, found {rest!r}", "only @daily takes a time: @daily 3:00")
            hour, minute = parse_time_of_day(rest)
            return CronTrigger(f"{minute} {hour} * * *", zone)
        return CronTrigger(DESCRIPTORS[lower], zone)
    return CronTrigger(_check_cron(stripped, lead), zone)


def describe_every(interval_ms: int) -> str:
    return "@every " + format_duration(timedelta(milliseconds=interval_ms))
