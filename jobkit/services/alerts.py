"""What alert rules do (``alerts:`` in jobs.yaml, parsed by :mod:`jobkit.config.alerts_file`): evaluation, cool-down
and delivery.

A rule fires at most once per ``cooldown`` (one Redis ``SET NX PX`` per rule), so one incident sends one alert.
``archived`` rules fire the moment a worker archives a task (:meth:`Alerts.on_archived`, wired to the worker's archive
hook); the other kinds are evaluated by ``system:health_check`` (see :mod:`jobkit.services.health`), against samples
of the queue counters that each health check records. Webhook and email channels go through the
``notification:send`` task, so delivery is retried per its policy and never runs inside the worker thread that
archived the task.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any, cast

from jobkit.config.alerts_file import NOTIFY_TASK
from jobkit.config.model import AlertRule
from jobkit.services.client import Client
from jobkit.services.queues import QueueStats

__all__ = ["Alerts"]

log = logging.getLogger("jobkit.alerts")

_SAMPLES_KEPT_MS = 8 * 86_400_000
_SAMPLES_MAX = 20_000


class Alerts:
    """The alert rules of one project."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.redis = client.redis
        self.keys = client.keys
        self.rules = client.project.alerts

    # -- cool-down and delivery --------------------------------------------------------------------------------------
    def claim(self, rule: AlertRule) -> bool:
        """True for the first caller in ``rule.cooldown`` (one round trip); later callers stay silent."""
        ttl_ms = max(1, int(rule.cooldown.total_seconds() * 1000))
        return bool(self.redis.set(self.keys.alert_cooldown(rule.name), int(time.time() * 1000), nx=True, px=ttl_ms))

    def deliver(self, rule: AlertRule, message: str, data: dict[str, Any]) -> None:
        """Send one alert to each channel of ``rule``: the log at once, webhooks and mail through notification:send."""
        title = f"jobkit alert: {rule.name}"
        for channel in rule.channels:
            if channel.kind == "log":
                log.warning("%s: %s", title, message)
            else:
                where = "url" if channel.kind == "webhook" else "to"
                payload: dict[str, Any] = {"channel": channel.kind, "title": title, "message": message, "data": data}
                self.client.dispatch(NOTIFY_TASK, **{**payload, where: channel.target})

    def fire(self, rule: AlertRule, message: str, data: dict[str, Any]) -> bool:
        """Deliver unless the rule is cooling down; True when the alert went out."""
        if not self.claim(rule):
            return False
        self.deliver(rule, message, {"rule": rule.name, "when": rule.when, **data})
        return True

    # -- archived tasks, at once -------------------------------------------------------------------------------------
    def on_archived(self, message: Any) -> None:
        """Fire the ``when: archived`` rules watching the message's queue: one round trip for each cool-down claim,
        then notification:send is enqueued (delivery happens in another task)."""
        for rule in self.rules.values():
            if rule.when != "archived" or (rule.queues and message.queue_name not in rule.queues):
                continue
            error = message.options.get("last_error") or "no error recorded"
            text = f"{message.actor_name} {message.message_id} archived on queue {message.queue_name}: {error}"
            data = {"queue": message.queue_name, "task": message.actor_name, "task_id": message.message_id}
            self.fire(rule, text, {**data, "error": error})

    # -- periodic evaluation (system:health_check) -------------------------------------------------------------------
    def record_sample(self, stats: list[QueueStats], now_ms: int) -> None:
        """Keep this moment's counters per queue, so rates and growth can be measured over a window."""
        counters = {s.queue: [s.processed_total, s.failed_total, s.archived, s.size] for s in stats}
        key = self.keys.alert_samples
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(key, {json.dumps({"t": now_ms, "q": counters}, separators=(",", ":")): now_ms})
        pipe.zremrangebyscore(key, "-inf", now_ms - _SAMPLES_KEPT_MS)
        pipe.zremrangebyrank(key, 0, -_SAMPLES_MAX - 1)
        pipe.execute()

    def baseline(self, window: timedelta, now_ms: int) -> dict[str, list[int]] | None:
        """Counters of the newest sample at least ``window`` old; else the oldest sample before now; None if none."""
        key = self.keys.alert_samples
        found = self.redis.zrevrangebyscore(key, now_ms - int(window.total_seconds() * 1000), "-inf", start=0, num=1)
        if not found:
            found = self.redis.zrangebyscore(key, "-inf", now_ms - 1, start=0, num=1)
        if not found:
            return None
        return cast(dict[str, list[int]], json.loads(cast(list[bytes], found)[0])["q"])

    def evaluate(self, stats: list[QueueStats], now_ms: int) -> list[str]:
        """Check the latency, failure-rate and growth rules against ``stats``; returns the rules that alerted."""
        by_queue = {s.queue: s for s in stats}
        fired: list[str] = []
        for rule in self.rules.values():
            if rule.when == "archived":
                continue
            watched = [by_queue[q] for q in (rule.queues or tuple(by_queue)) if q in by_queue]
            found = self._breaches(rule, watched, now_ms)
            if found and self.fire(rule, "; ".join(text for text, _ in found), {"queues": [q for _, q in found]}):
                fired.append(rule.name)
        return fired

    def _breaches(self, rule: AlertRule, watched: list[QueueStats], now_ms: int) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if rule.when == "latency":
            for s in watched:
                if s.latency_ms > rule.over * 1000:
                    found.append((f"queue {s.queue}: latency {s.latency_ms / 1000:.1f}s over {rule.over:g}s", s.queue))
            return found
        assert rule.window is not None
        base = self.baseline(rule.window, now_ms)
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
