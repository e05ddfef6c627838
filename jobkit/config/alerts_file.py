"""``alerts:`` in jobs.yaml -> :class:`~jobkit.config.model.AlertRule` by name, every problem with its position.

What the rules do when they fire is :mod:`jobkit.services.alerts`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import yaml

from jobkit.config.addresses import check_address
from jobkit.config.model import DEFAULT_COOLDOWN, AlertChannel, AlertKind, AlertRule, QueueSpec, TaskSpec
from jobkit.config.yamlnodes import Reader
from jobkit.errors import BadMessage, did_you_mean

__all__ = ["ALERT_KINDS", "NOTIFY_TASK", "parse_alerts"]

ALERT_KINDS: tuple[AlertKind, ...] = ("archived", "latency", "failure_rate", "archived_growth")
RULE_KEYS = ["when", "queue", "queues", "over", "window", "channels", "cooldown", "min_processed"]
CHANNEL_KINDS = ["webhook", "email", "log"]
#: Webhook and email channels are delivered by this task, which must be declared.
NOTIFY_TASK = "notification:send"
_RULE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_-]*")
_NEEDS_OVER = {"latency", "failure_rate", "archived_growth"}
_NEEDS_WINDOW = {"failure_rate", "archived_growth"}


def parse_alerts(
    reader: Reader, node: yaml.Node, queues: Mapping[str, QueueSpec], tasks: Mapping[str, TaskSpec]
) -> dict[str, AlertRule]:
    """The ``alerts:`` mapping -> rules by name; problems go to ``reader`` with their position."""
    rules: dict[str, AlertRule] = {}
    for path, item in reader.walk_mapping(node, "alerts"):
        if not _RULE_NAME.fullmatch(item.key):
            reader.problem(item.key_node, path, "invalid alert name", "use letters, digits, '_' and '-'")
            continue
        rule = _Rule(reader, path, queues, tasks).parse(item.key, item.key_node, item.node)
        if rule is not None:
            rules[item.key] = rule
    return rules


class _Rule:
    def __init__(
        self, reader: Reader, path: str, queues: Mapping[str, QueueSpec], tasks: Mapping[str, TaskSpec]
    ) -> None:
        self.r = reader
        self.path = path
        self.queues = queues
        self.tasks = tasks

    def problem(self, node: yaml.Node, key: str, message: str, hint: str = "") -> None:
        self.r.problem(node, f"{self.path}.{key}" if key else self.path, message, hint)

    def parse(self, name: str, key_node: yaml.Node, node: yaml.Node) -> AlertRule | None:
        before = len(self.r.problems)
        options = self.r.mapping(node, self.path, RULE_KEYS)
        if len(self.r.problems) > before or not isinstance(node, yaml.MappingNode):
            return None
        when = self.when(options["when"].node) if "when" in options else None
        if "when" not in options:
            self.problem(key_node, "when", "missing", "one of: " + ", ".join(ALERT_KINDS))
        watched = self.watched(options)
        channels = self.channels(options["channels"].node) if "channels" in options else ()
        if "channels" not in options:
            self.problem(key_node, "channels", "missing", "e.g. channels: [log, {webhook: https://example.com/hook}]")
        cooldown = DEFAULT_COOLDOWN
        if "cooldown" in options:
            cooldown = (
                self.r.duration(options["cooldown"].node, f"{self.path}.cooldown", timedelta(seconds=1)) or cooldown
            )
        over = 0.0
        window: timedelta | None = None
        min_processed = 1
        if when is not None:
            over = self.over(when, options, key_node)
            window = self.window(when, options, key_node)
            if "min_processed" in options:
                entry = options["min_processed"]
                if when != "failure_rate":
                    self.problem(entry.key_node, "min_processed", f"does not apply to when: {when}", "remove it")
                else:
                    min_processed = self.r.integer(entry.node, f"{self.path}.min_processed", 1) or 1
        if when is None or len(self.r.problems) > before:
            return None
        return AlertRule(name, when, watched, channels, cooldown, over, window, min_processed)

    def when(self, node: yaml.Node) -> AlertKind | None:
        value = self.r.text(node, f"{self.path}.when")
        for kind in ALERT_KINDS:
            if value == kind:
                return kind
        if value is not None:
            hint = did_you_mean(value, set(ALERT_KINDS)) or "one of: " + ", ".join(ALERT_KINDS)
            self.problem(node, "when", f"unknown condition {value!r}", hint)
        return None

    def watched(self, options: Mapping[str, Any]) -> tuple[str, ...]:
        if "queue" in options and "queues" in options:
            self.problem(options["queues"].key_node, "queues", "given with queue", "use one of queue: or queues:")
            return ()
        key = "queue" if "queue" in options else "queues" if "queues" in options else None
        if key is None:
            return ()
        node = options[key].node
        names = self.r.names(node, f"{self.path}.{key}")
        if names is None:
            return ()
        items = [node] if isinstance(node, yaml.ScalarNode) else list(node.value)
        for name, item in zip(names, items, strict=True):
            if self.queues and name not in self.queues:
                hint = did_you_mean(name, set(self.queues)) or "declared queues: " + ", ".join(self.queues)
                self.problem(item, key, f"unknown queue {name!r}", hint)
        return names

    def channels(self, node: yaml.Node) -> tuple[AlertChannel, ...]:
        path = f"{self.path}.channels"
        items = [node] if isinstance(node, yaml.ScalarNode) else self.r.sequence(node, path)
        if isinstance(node, yaml.SequenceNode) and not items:
            self.problem(node, "channels", "no channel", "e.g. channels: [log]")
        found: list[AlertChannel] = []
        for index, item in enumerate(items):
            channel = self.channel(item, f"channels[{index}]")
            if channel is not None:
                found.append(channel)
        return tuple(found)

    def channel(self, node: yaml.Node, key: str) -> AlertChannel | None:
        hint = "log, {webhook: URL} or {email: ADDRESS}"
        if isinstance(node, yaml.ScalarNode):
            if node.value == "log":
                return AlertChannel("log")
            self.problem(node, key, f"unknown channel {node.value!r}", did_you_mean(node.value, CHANNEL_KINDS) or hint)
            return None
        before = len(self.r.problems)
        entries = self.r.mapping(node, f"{self.path}.{key}", ["webhook", "email"])
        if len(self.r.problems) > before:
            return None
        if len(entries) != 1:
            self.problem(node, key, "expected one channel per item", hint)
            return None
        kind, entry = next(iter(entries.items()))
        target = self.r.text(entry.node, f"{self.path}.{key}.{kind}")
        if target is None:
            return None
        if kind == "webhook":
            parts = urlsplit(target)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                self.problem(entry.node, f"{key}.webhook", f"expected an http(s) URL, found {target!r}")
                return None
        else:
            try:
                check_address(target, "email")
            except BadMessage:
                self.problem(entry.node, f"{key}.email", f"invalid email address {target!r}", "like ops@example.com")
                return None
        if NOTIFY_TASK not in self.tasks:
            self.problem(entry.key_node, f"{key}.{kind}", f"needs the task {NOTIFY_TASK}", "declare it under tasks:")
            return None
        return AlertChannel("webhook" if kind == "webhook" else "email", target)

    def over(self, when: AlertKind, options: Mapping[str, Any], key_node: yaml.Node) -> float:
        path = f"{self.path}.over"
        if "over" not in options:
            if when in _NEEDS_OVER:
                example = {"latency": "30s", "failure_rate": "0.2", "archived_growth": "10"}[when]
                self.problem(key_node, "over", "missing", f"the threshold, e.g. over: {example}")
            return 0.0
        entry = options["over"]
        if when == "archived":
            self.problem(entry.key_node, "over", "does not apply to when: archived", "every archived task alerts")
            return 0.0
        if when == "latency":
            duration = self.r.duration(entry.node, path, timedelta(milliseconds=1))
            return duration.total_seconds() if duration is not None else 0.0
        if when == "archived_growth":
            count = self.r.integer(entry.node, path, 0)
            return float(count) if count is not None else 0.0
        value = _number(entry.node)
        if value is None or not 0 <= value < 1:
            self.problem(entry.node, "over", f"expected a rate from 0 to 1, found {entry.node.value!r}", "e.g. 0.2")
            return 0.0
        return value

    def window(self, when: AlertKind, options: Mapping[str, Any], key_node: yaml.Node) -> timedelta | None:
        if "window" not in options:
            if when in _NEEDS_WINDOW:
                self.problem(key_node, "window", "missing", "the span measured, e.g. window: 10m")
            return None
        entry = options["window"]
        if when not in _NEEDS_WINDOW:
            self.problem(entry.key_node, "window", f"does not apply to when: {when}", "remove it")
            return None
        value = self.r.duration(entry.node, f"{self.path}.window", timedelta(seconds=1))
        return value


def _number(node: yaml.Node) -> float | None:
    if not isinstance(node, yaml.ScalarNode) or node.tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
        return None
    return float(Reader.value(node))
