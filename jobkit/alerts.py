"""Alert rules (``alerts:`` in jobs.yaml): parsing with positions, evaluation, cool-down and delivery.

A rule fires at most once per ``cooldown`` (one Redis ``SET NX PX`` per rule), so one incident sends one alert.
``archived`` rules fire from :class:`DeadTaskAlerts` the moment a worker archives a task; the other kinds are
evaluated by ``system:health_check`` (see :mod:`jobkit.health`), against samples of the queue counters that each
health check records. Webhook and email channels go through the ``notification:send`` task, so delivery is retried
per its policy and never runs inside the worker thread that archived the task.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import dramatiq
import redis
import yaml

from .mail import BadMessage, check_address
from .model import AlertChannel, AlertKind, AlertRule, QueueSpec, TaskSpec
from .yamlnodes import Reader, did_you_mean

if TYPE_CHECKING:
    from .client import Client
    from .inspector import QueueStats

__all__ = [
    "ALERT_KINDS",
    "DeadTaskAlerts",
    "claim",
    "deliver",
    "evaluate",
    "parse_alerts",
    "record_sample",
]

log = logging.getLogger("jobkit.alerts")

ALERT_KINDS: tuple[AlertKind, ...] = ("archived", "latency", "failure_rate", "archived_growth")
RULE_KEYS = ["when", "queue", "queues", "over", "window", "channels", "cooldown", "min_processed"]
CHANNEL_KINDS = ["webhook", "email", "log"]
NOTIFY_TASK = "notification:send"
_RULE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_-]*")
_NEEDS_OVER = {"latency", "failure_rate", "archived_growth"}
_NEEDS_WINDOW = {"failure_rate", "archived_growth"}
_SAMPLES_KEPT_MS = 8 * 86_400_000
_SAMPLES_MAX = 20_000


# -- parsing -----------------------------------------------------------------------------------------------------------
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
        cooldown = timedelta(minutes=10)
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


# -- cool-down and delivery ------------------------------------------------------------------------------------------
def cooldown_key(namespace: str, rule: AlertRule) -> str:
    return f"{namespace}:__alerts__:{rule.name}"


def claim(client: redis.Redis, namespace: str, rule: AlertRule) -> bool:
    """True for the first caller in ``rule.cooldown`` (one round trip); later callers stay silent."""
    ttl_ms = max(1, int(rule.cooldown.total_seconds() * 1000))
    return bool(client.set(cooldown_key(namespace, rule), int(time.time() * 1000), nx=True, px=ttl_ms))


def deliver(client: Client, rule: AlertRule, message: str, data: dict[str, Any]) -> None:
    """Send one alert to each channel of ``rule``: the log at once, webhooks and mail through notification:send."""
    title = f"jobkit alert: {rule.name}"
    for channel in rule.channels:
        if channel.kind == "log":
            log.warning("%s: %s", title, message)
        elif channel.kind == "webhook":
            client.dispatch(NOTIFY_TASK, channel="webhook", url=channel.target, title=title, message=message, data=data)
        else:
            client.dispatch(NOTIFY_TASK, channel="email", to=channel.target, title=title, message=message, data=data)


def fire(client: Client, rule: AlertRule, message: str, data: dict[str, Any]) -> bool:
    """Deliver unless the rule is cooling down; True when the alert went out."""
    if not claim(client.broker.client, client.settings.namespace, rule):
        return False
    deliver(client, rule, message, {"rule": rule.name, "when": rule.when, **data})
    return True


# -- periodic evaluation (system:health_check) -----------------------------------------------------------------------
def _samples_key(namespace: str) -> str:
    return f"{namespace}:__alerts__:samples"


def record_sample(client: redis.Redis, namespace: str, stats: list[QueueStats], now_ms: int) -> None:
    """Keep this moment's counters per queue, so rates and growth can be measured over a window."""
    counters = {s.queue: [s.processed_total, s.failed_total, s.archived, s.size] for s in stats}
    key = _samples_key(namespace)
    pipe = client.pipeline(transaction=False)
    pipe.zadd(key, {json.dumps({"t": now_ms, "q": counters}, separators=(",", ":")): now_ms})
    pipe.zremrangebyscore(key, "-inf", now_ms - _SAMPLES_KEPT_MS)
    pipe.zremrangebyrank(key, 0, -_SAMPLES_MAX - 1)
    pipe.execute()


def baseline(client: redis.Redis, namespace: str, window: timedelta, now_ms: int) -> dict[str, list[int]] | None:
    """Counters of the newest sample at least ``window`` old; else the oldest sample before now; None if none."""
    key = _samples_key(namespace)
    found = client.zrevrangebyscore(key, now_ms - int(window.total_seconds() * 1000), "-inf", start=0, num=1)
    if not found:
        found = client.zrangebyscore(key, "-inf", now_ms - 1, start=0, num=1)
    if not found:
        return None
    return cast(dict[str, list[int]], json.loads(cast(list[bytes], found)[0])["q"])


def evaluate(client: Client, stats: list[QueueStats], now_ms: int) -> list[str]:
    """Check the latency, failure-rate and growth rules against ``stats``; returns the rules that alerted."""
    by_queue = {s.queue: s for s in stats}
    fired: list[str] = []
    for rule in client.project.alerts.values():
        if rule.when == "archived":
            continue
        watched = [by_queue[q] for q in (rule.queues or tuple(by_queue)) if q in by_queue]
        found = _breaches(client, rule, watched, now_ms)
        if found and fire(client, rule, "; ".join(text for text, _ in found), {"queues": [q for _, q in found]}):
            fired.append(rule.name)
    return fired


def _breaches(client: Client, rule: AlertRule, watched: list[QueueStats], now_ms: int) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if rule.when == "latency":
        for s in watched:
            if s.latency_ms > rule.over * 1000:
                found.append((f"queue {s.queue}: latency {s.latency_ms / 1000:.1f}s over {rule.over:g}s", s.queue))
        return found
    assert rule.window is not None
    base = baseline(client.broker.client, client.settings.namespace, rule.window, now_ms)
    if base is None:
        return found
    for s in watched:
        if s.queue not in base:
            continue
        processed0, failed0, archived0, _ = base[s.queue]
        if rule.when == "failure_rate":
            processed, failed = s.processed_total - processed0, s.failed_total - failed0
            if processed >= rule.min_processed and processed > 0 and failed / processed > rule.over:
                text = f"queue {s.queue}: {failed} of {processed} attempts failed ({failed / processed:.0%})"
                found.append((f"{text}, over {rule.over:.0%}", s.queue))
        elif s.archived - archived0 > rule.over:
            grown = s.archived - archived0
            found.append((f"queue {s.queue}: {grown} task(s) archived, over {rule.over:g}", s.queue))
    return found


# -- archived tasks, at once -----------------------------------------------------------------------------------------
class DeadTaskAlerts(dramatiq.Middleware):
    """Fires ``when: archived`` rules as a worker archives a task: one Redis round trip for the cool-down claim,
    then notification:send is enqueued (delivery happens in another task). Never fails the worker."""

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        from .client import current_client

        # The worker's client (ProjectBoot sets it). Never build one from the environment here: a process without
        # a project has no rules.
        client = current_client()
        if client is None or client.broker is not broker or not client.project.alerts:
            return
        try:
            rules = [
                rule
                for rule in client.project.alerts.values()
                if rule.when == "archived" and (not rule.queues or message.queue_name in rule.queues)
            ]
            for rule in rules:
                error = message.options.get("last_error") or "no error recorded"
                text = f"{message.actor_name} {message.message_id} archived on queue {message.queue_name}: {error}"
                data = {"queue": message.queue_name, "task": message.actor_name, "task_id": message.message_id}
                fire(client, rule, text, {**data, "error": error})
        except Exception as exc:  # an alert must never break the worker
            log.warning("could not send the alert for archived task %s: %s", message.message_id, exc)
