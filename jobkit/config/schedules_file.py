"""schedules.yaml -> :class:`~jobkit.model.ScheduleFile`; problems are reported like jobs.yaml's, all at once."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from jobkit.config.cron import load_timezone, parse_spec, parse_time_of_day
from jobkit.config.imports import import_handler
from jobkit.config.model import Project, ScheduleFile, ScheduleSpec
from jobkit.config.payloads import check_payload
from jobkit.config.yamlnodes import Entry, Reader
from jobkit.errors import CronError, ImportProblem, PayloadError, Problem, did_you_mean

__all__ = ["SCHEDULE_NAME", "load_schedules"]

SCHEDULE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_.-]*")
TOP_KEYS = ["timezone", "schedules"]
SPEC_KEYS = ["cron", "daily_at", "weekly_on", "monthly_on"]
ENTRY_KEYS = [*SPEC_KEYS, "task", "payload", "queue", "timezone"]
WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_SPEC_HINT = 'e.g. cron: "0 2 * * *", daily_at: "10:30", weekly_on: {day: mon, at: "09:00"} or monthly_on: {day: 15}'


def load_schedules(path: str | Path, project: Project | None) -> ScheduleFile:
    """Read and check schedules.yaml against ``project`` (tasks, queues, payloads; skipped when None)."""
    path = Path(path)
    reader, root = Reader.open(path)
    loaded = _Loader(reader, project).file(root, str(path))
    reader.raise_if_any()
    return loaded


class _Loader:
    def __init__(self, reader: Reader, project: Project | None) -> None:
        self.r = reader
        self.project = project

    def file(self, root: yaml.Node, source: str) -> ScheduleFile:
        top = self.r.mapping(root, "", TOP_KEYS)
        zone = ZoneInfo("UTC")
        if "timezone" in top:
            zone = self.zone(top["timezone"].node, "timezone") or zone
        if "schedules" not in top:
            if isinstance(root, yaml.MappingNode):
                self.r.problem(root, "schedules", "missing", "e.g. schedules: {health-check: {cron: '@hourly', ...}}")
            return ScheduleFile(source, zone.key, {})
        entries: dict[str, ScheduleSpec] = {}
        if isinstance(top["schedules"].node, yaml.ScalarNode) and top["schedules"].node.value in ("", "~", "null"):
            return ScheduleFile(source, zone.key, {})  # `schedules:` with nothing under it: no entries
        for path, item in self.r.walk_mapping(top["schedules"].node, "schedules"):
            entry = self.entry(path, item, zone)
            if entry is not None:
                entries[item.key] = entry
        return ScheduleFile(source, zone.key, entries)

    def zone(self, node: yaml.Node, path: str) -> ZoneInfo | None:
        name = self.r.text(node, path, "an IANA name like UTC or Europe/Berlin")
        if name is None:
            return None
        try:
            return load_timezone(name)
        except CronError as exc:
            self.r.problem(node, path, exc.message, exc.hint)
            return None

    def entry(self, path: str, item: Entry, file_zone: ZoneInfo) -> ScheduleSpec | None:
        if not SCHEDULE_NAME.fullmatch(item.key):
            self.r.problem(item.key_node, path, "invalid schedule name", "use letters, digits, '_', '-' and '.'")
            return None
        if item.key.startswith("api-"):
            self.r.problem(item.key_node, path, "names starting with 'api-' are reserved", "for run-time schedules")
            return None
        if not isinstance(item.node, yaml.MappingNode):
            self.r.wrong_type(item.node, path, "a mapping", "with task and cron (or daily_at, weekly_on, monthly_on)")
            return None
        options = self.r.mapping(item.node, path, ENTRY_KEYS)
        given = [key for key in SPEC_KEYS if key in options]
        zone = self.zone(options["timezone"].node, f"{path}.timezone") if "timezone" in options else file_zone
        spec = None
        if not given:
            self.r.problem(item.key_node, f"{path}.cron", "missing: when should it run?", _SPEC_HINT)
        elif len(given) > 1:
            second = options[given[1]]
            self.r.problem(second.key_node, f"{path}.{given[1]}", f"give only one of {', '.join(given)}")
        elif zone is not None:
            spec = self.spec(given[0], options[given[0]].node, f"{path}.{given[0]}", zone)
        task = self.task(options, path, item.key_node)
        queue = self.queue(options, path)
        payload = self.payload(options, path, task)
        if spec is None or zone is None or task is None or payload is None or ("queue" in options and queue is None):
            return None
        return ScheduleSpec(
            id=item.key,
            task=task,
            spec=spec,
            payload=payload,
            queue=queue,
            timezone=zone.key,
            source=f"yaml:{item.key}",
        )

    # -- when -------------------------------------------------------------------------------------------------------
    def spec(self, key: str, node: yaml.Node, path: str, zone: ZoneInfo) -> str | None:
        try:
            if key == "cron":
                text = self.r.text(node, path, _SPEC_HINT)
                if text is None:
                    return None
                try:
                    parse_spec(text, zone)
                except CronError as exc:
                    self.cron_problem(node, path, text, exc)
                    return None
                return text.strip()
            if key == "daily_at":
                at = self.r.text(node, path, 'a time of day, e.g. "10:30"')
                if at is None:
                    return None
                hour, minute = parse_time_of_day(at)
                return f"{minute} {hour} * * *"
            if key == "weekly_on":
                return self.weekly(node, path)
            return self.monthly(node, path)
        except CronError as exc:
            self.r.problem(node, path, exc.message, exc.hint)
            return None

    def cron_problem(self, node: yaml.Node, path: str, text: str, exc: CronError) -> None:
        # Point at the offending field when the text sits on one line as written.
        assert isinstance(node, yaml.ScalarNode)
        shift = {None: 0, "": 0, '"': 1, "'": 1}.get(node.style)
        same_line = node.start_mark.line == node.end_mark.line
        if shift is None or not same_line or "\\" in text:
            self.r.problem(node, path, exc.message, exc.hint)
            return
        mark = node.start_mark
        line, column = mark.line + 1, mark.column + 1 + shift + exc.offset
        self.r.problems.append(Problem(self.r.file, line, column, path, exc.message, exc.hint))

    def _at(self, options: dict[str, Entry], path: str) -> tuple[int, int] | None:
        if "at" not in options:
            return 0, 0
        node = options["at"].node
        text = self.r.text(node, f"{path}.at", 'a time of day, e.g. "09:00"')
        if text is None:
            return None
        try:
            return parse_time_of_day(text)
        except CronError as exc:
            self.r.problem(node, f"{path}.at", exc.message, exc.hint)
            return None

    def weekly(self, node: yaml.Node, path: str) -> str | None:
        options = self.r.mapping(node, path, ["day", "at"])
        if not isinstance(node, yaml.MappingNode):
            return None
        at = self._at(options, path)
        if "day" not in options:
            self.r.problem(node, f"{path}.day", "missing", "mon, tue, wed, thu, fri, sat or sun")
            return None
        day_node = options["day"].node
        day = self.r.text(day_node, f"{path}.day", "mon, tue, wed, thu, fri, sat or sun")
        if day is None:
            return None
        if day.lower()[:3] not in WEEKDAYS or day.lower() not in (day.lower()[:3], _full_day(day.lower()[:3])):
            close = did_you_mean(day.lower(), [*WEEKDAYS, *map(_full_day, WEEKDAYS)])
            hint = close or "mon, tue, wed, thu, fri, sat or sun"
            self.r.problem(day_node, f"{path}.day", f"unknown day {day!r}", hint)
            return None
        if at is None:
            return None
        return f"{at[1]} {at[0]} * * {day.upper()[:3]}"

    def monthly(self, node: yaml.Node, path: str) -> str | None:
        options = self.r.mapping(node, path, ["day", "at"])
        if not isinstance(node, yaml.MappingNode):
            return None
        at = self._at(options, path)
        if "day" not in options:
            self.r.problem(node, f"{path}.day", "missing", "1-31, or last")
            return None
        day_node = options["day"].node
        day: str | None = None
        if isinstance(day_node, yaml.ScalarNode) and day_node.value == "last":
            day = "L"
        else:
            number = self.r.integer(day_node, f"{path}.day", 1, 31)
            day = str(number) if number is not None else None
        if day is None or at is None:
            return None
        return f"{at[1]} {at[0]} {day} * *"

    # -- what -------------------------------------------------------------------------------------------------------
    def task(self, options: dict[str, Entry], path: str, key_node: yaml.Node) -> str | None:
        if "task" not in options:
            self.r.problem(key_node, f"{path}.task", "missing", "the task to run, declared in jobs.yaml")
            return None
        node = options["task"].node
        name = self.r.text(node, f"{path}.task", "a task from jobs.yaml, e.g. email:send")
        if name is None or self.project is None:
            return name
        if name not in self.project.tasks:
            hint = did_you_mean(name, set(self.project.tasks)) or "declared tasks: " + ", ".join(self.project.tasks)
            self.r.problem(node, f"{path}.task", f"unknown task {name!r}", hint)
            return None
        return name

    def queue(self, options: dict[str, Entry], path: str) -> str | None:
        if "queue" not in options:
            return None
        node = options["queue"].node
        name = self.r.text(node, f"{path}.queue")
        if name is None or self.project is None or name in self.project.queues:
            return name
        hint = did_you_mean(name, set(self.project.queues)) or "declared queues: " + ", ".join(self.project.queues)
        self.r.problem(node, f"{path}.queue", f"unknown queue {name!r}", hint)
        return None

    def payload(self, options: dict[str, Entry], path: str, task: str | None) -> dict[str, Any] | None:
        node = options["payload"].node if "payload" in options else None
        if node is not None and not isinstance(node, yaml.MappingNode):
            self.r.wrong_type(node, f"{path}.payload", "a mapping", "the handler's keyword arguments")
            return None
        payload: dict[str, Any] = {}
        if node is not None:
            for key, entry in self.r.mapping(node, f"{path}.payload").items():
                payload[key] = Reader.value(entry.node)
        if task is None or self.project is None:
            return payload
        spec = self.project.tasks[task]
        try:
            signature = inspect.signature(import_handler(spec.handler))
        except (ImportProblem, TypeError, ValueError):
            return payload  # jobs.yaml's own check reports an unimportable handler
        try:
            check_payload(spec, signature, payload)
        except PayloadError as exc:
            message = str(exc).removeprefix(f"{task}: ")
            where = node if node is not None else options["task"].node
            self.r.problem(where, f"{path}.payload", message)
            return None
        return payload


def _full_day(short: str) -> str:
    return {
        "sun": "sunday",
        "mon": "monday",
        "tue": "tuesday",
        "wed": "wednesday",
        "thu": "thursday",
        "fri": "friday",
        "sat": "saturday",
    }[short]
