"""jobs.yaml -> :class:`~jobkit.model.Project`; every problem is reported as ``FILE:LINE:COL: path: message (hint)``."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from .imports import ImportProblem, ensure_import_path, import_exception, import_handler
from .model import ExportSpec, Priority, Project, QueueSpec, RetryPolicy, TaskSpec, WorkerSpec
from .yamlnodes import Entry, Reader, did_you_mean

__all__ = ["QUEUE_NAME", "TASK_NAME", "load_project"]

QUEUE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_-]*")
TASK_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_.-]*(?::[a-zA-Z0-9_.-]+)*")
_EXPORT_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_-]*")
_READ_ONLY_START = re.compile(r"\s*(select|with)\b", re.IGNORECASE)

TOP_KEYS = ["queues", "priority", "worker", "defaults", "tasks", "exports"]
WORKER_KEYS = ["processes", "threads", "shutdown_timeout"]
POLICY_KEYS = ["queue", "max_retries", "backoff", "timeout", "retention", "retry_on", "skip_retry_on"]
PLANNED_KEYS = ["unique", "rate_limit", "concurrency"]
TASK_KEYS = ["handler", *POLICY_KEYS, "api", *PLANNED_KEYS]
BACKOFF_KEYS = ["min", "max"]
PRIORITIES = ["weighted", "strict"]

_BUILTIN_POLICY: dict[str, Any] = {
    "queue": "default",
    "max_retries": 3,
    "backoff.min": timedelta(seconds=1),
    "backoff.max": timedelta(hours=1),
    "timeout": timedelta(minutes=10),
    "retention": timedelta(hours=24),
    "retry_on": (),
    "skip_retry_on": (),
}


@dataclass
class _Policy:
    """Policy values read from one mapping (``defaults`` or a task), keyed like ``_BUILTIN_POLICY``."""

    values: dict[str, Any]
    nodes: dict[str, yaml.Node]


def load_project(path: str | Path) -> Project:
    """Read and check jobs.yaml; raises :class:`~jobkit.errors.ConfigError` listing every problem."""
    path = Path(path)
    reader = Reader(str(path))
    root = reader.compose(path)
    if root is None:
        reader.raise_if_any()
        raise AssertionError("unreachable: compose reported no problem")
    ensure_import_path(str(path.parent))
    project = _Loader(reader, str(path)).project(root)
    reader.raise_if_any()
    assert project is not None
    return project


class _Loader:
    def __init__(self, reader: Reader, source: str) -> None:
        self.r = reader
        self.source = source

    def project(self, root: yaml.Node) -> Project | None:
        top = self.r.mapping(root, "", TOP_KEYS)
        queues = self.queues(top["queues"]) if "queues" in top else {}
        if "queues" not in top and isinstance(root, yaml.MappingNode):
            self.r.problem(root, "queues", "missing", "declare at least one queue, e.g. queues: {default: {weight: 1}}")
        priority = self.priority(top["priority"]) if "priority" in top else "weighted"
        worker = self.worker(top["worker"]) if "worker" in top else WorkerSpec()
        defaults = self.policy(top["defaults"].node, "defaults", POLICY_KEYS) if "defaults" in top else None
        if defaults is not None:
            self.check_queue(defaults, "defaults", queues)
        tasks = self.tasks(top["tasks"], defaults, queues) if "tasks" in top else {}
        exports = self.exports(top["exports"]) if "exports" in top else {}
        if self.r.problems or priority is None or worker is None:
            return None
        default_queue = defaults.values.get("queue", "default") if defaults else "default"
        return Project(
            source=self.source,
            queues=queues,
            tasks=tasks,
            priority=priority,
            worker=worker,
            exports=exports,
            default_queue=default_queue,
        )

    # -- sections ---------------------------------------------------------------------------------------------------
    def queues(self, entry: Entry) -> dict[str, QueueSpec]:
        queues: dict[str, QueueSpec] = {}
        for path, item in self.r.walk_mapping(entry.node, "queues"):
            if not QUEUE_NAME.fullmatch(item.key):
                self.r.problem(item.key_node, path, "invalid queue name", "use letters, digits, '_' and '-'")
                continue
            weight: int | None
            if isinstance(item.node, yaml.ScalarNode):  # `critical: 6`, as Asynq writes it
                weight = self.r.integer(item.node, path, minimum=1)
            else:
                options = self.r.mapping(item.node, path, ["weight"])
                weight = (
                    self.r.integer(options["weight"].node, f"{path}.weight", minimum=1) if "weight" in options else 1
                )
            if weight is not None:
                queues[item.key] = QueueSpec(item.key, weight)
        if not queues and not self.r.problems:
            self.r.problem(entry.node, "queues", "no queue declared", "e.g. queues: {default: {weight: 1}}")
        return queues

    def priority(self, entry: Entry) -> Priority | None:
        value = self.r.text(entry.node, "priority")
        if value == "weighted":
            return "weighted"
        if value == "strict":
            return "strict"
        if value is not None:
            hint = did_you_mean(value, PRIORITIES) or "weighted or strict"
            self.r.problem(entry.node, "priority", f"unknown priority {value!r}", hint)
        return None

    def worker(self, entry: Entry) -> WorkerSpec | None:
        options = self.r.mapping(entry.node, "worker", WORKER_KEYS)
        base = WorkerSpec()
        processes = (
            self.r.integer(options["processes"].node, "worker.processes", 1, 64)
            if "processes" in options
            else base.processes
        )
        threads = (
            self.r.integer(options["threads"].node, "worker.threads", 1, 1024) if "threads" in options else base.threads
        )
        shutdown = (
            self.r.duration(options["shutdown_timeout"].node, "worker.shutdown_timeout")
            if "shutdown_timeout" in options
            else base.shutdown_timeout
        )
        if processes is None or threads is None or shutdown is None:
            return None
        return WorkerSpec(processes=processes, threads=threads, shutdown_timeout=shutdown)

    def policy(self, node: yaml.Node, path: str, allowed: list[str]) -> _Policy:
        policy = _Policy({}, {})
        for key_path, item in self.r.walk_mapping(node, path):
            if item.key not in allowed:
                hint = did_you_mean(item.key, allowed) or "expected one of: " + ", ".join(allowed)
                self.r.problem(item.key_node, key_path, "unknown key", hint)
                continue
            value: Any = None
            if item.key == "queue":
                value = self.r.text(item.node, key_path)
            elif item.key == "max_retries":
                value = self.r.integer(item.node, key_path, 0, 1000)
            elif item.key in ("timeout", "retention"):
                minimum = timedelta(milliseconds=1) if item.key == "timeout" else timedelta()
                value = self.r.duration(item.node, key_path, minimum)
            elif item.key == "backoff":
                for sub_path, bound in self.r.walk_mapping(item.node, key_path):
                    if bound.key not in BACKOFF_KEYS:
                        self.r.problem(bound.key_node, sub_path, "unknown key", did_you_mean(bound.key, BACKOFF_KEYS))
                        continue
                    duration = self.r.duration(bound.node, sub_path)
                    if duration is not None:
                        policy.values[f"backoff.{bound.key}"] = duration
                        policy.nodes[f"backoff.{bound.key}"] = bound.node
                low, high = policy.values.get("backoff.min"), policy.values.get("backoff.max")
                if low is not None and high is not None and low > high:
                    self.r.problem(policy.nodes["backoff.min"], key_path, "min is longer than max")
                continue
            elif item.key in ("retry_on", "skip_retry_on"):
                value = self.exceptions(item.node, key_path)
            elif item.key == "handler":
                value = self.r.text(item.node, key_path, "module:function")
            elif item.key == "api":
                value = self.r.boolean(item.node, key_path)
            elif item.key in PLANNED_KEYS:
                self.r.problem(item.key_node, key_path, "not supported yet", "planned; remove it for now")
            if value is not None:
                policy.values[item.key] = value
                policy.nodes[item.key] = item.node
        return policy

    def exceptions(self, node: yaml.Node, path: str) -> tuple[str, ...] | None:
        names = self.r.names(node, path)
        if names is None:
            return None
        items = [node] if isinstance(node, yaml.ScalarNode) else list(node.value)
        for name, item in zip(names, items, strict=True):
            try:
                import_exception(name)
            except ImportProblem as exc:
                self.r.problem(item, path, exc.message, exc.hint)
                return None
        return names

    def check_queue(self, policy: _Policy, path: str, queues: dict[str, QueueSpec]) -> None:
        name = policy.values.get("queue")
        if name is not None and queues and name not in queues:
            hint = did_you_mean(name, set(queues)) or "declared queues: " + ", ".join(queues)
            self.r.problem(policy.nodes["queue"], f"{path}.queue", f"unknown queue {name!r}", hint)

    def tasks(self, entry: Entry, defaults: _Policy | None, queues: dict[str, QueueSpec]) -> dict[str, TaskSpec]:
        tasks: dict[str, TaskSpec] = {}
        for path, item in self.r.walk_mapping(entry.node, "tasks"):
            if not TASK_NAME.fullmatch(item.key):
                self.r.problem(item.key_node, path, "invalid task name", "use group:action, e.g. email:send")
                continue
            own = self.policy(item.node, path, TASK_KEYS)
            if not isinstance(item.node, yaml.MappingNode):
                continue
            self.check_queue(own, path, queues)
            if "queue" not in own.values and defaults is None and queues and "default" not in queues:
                self.r.problem(item.key_node, f"{path}.queue", "missing", "no defaults.queue and no queue 'default'")
            values = {**_BUILTIN_POLICY, **(defaults.values if defaults else {}), **own.values}
            mixed = ("backoff.min" in own.values) != ("backoff.max" in own.values)
            if mixed and values["backoff.min"] > values["backoff.max"]:
                node = own.nodes.get("backoff.min") or own.nodes["backoff.max"]
                self.r.problem(node, f"{path}.backoff", "min is longer than max (with the other bound inherited)")
            handler = own.values.get("handler")
            if handler is None:
                if "handler" not in own.nodes:
                    self.r.problem(item.key_node, f"{path}.handler", "missing", "module:function of the task's code")
                continue
            self.check_handler(handler, own.nodes["handler"], f"{path}.handler")
            tasks[item.key] = TaskSpec(
                name=item.key,
                handler=handler,
                queue=values["queue"],
                retry=RetryPolicy(
                    max_retries=values["max_retries"],
                    backoff_min=values["backoff.min"],
                    backoff_max=values["backoff.max"],
                    retry_on=values["retry_on"],
                    skip_retry_on=values["skip_retry_on"],
                ),
                timeout=values["timeout"],
                retention=values["retention"],
                api=bool(values.get("api", False)),
            )
        return tasks

    def check_handler(self, handler: str, node: yaml.Node, path: str) -> None:
        try:
            function = import_handler(handler)
        except ImportProblem as exc:
            self.r.problem(node, path, exc.message, exc.hint)
            return
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):
            return
        positional_only = [p.name for p in signature.parameters.values() if p.kind is p.POSITIONAL_ONLY]
        if positional_only:
            self.r.problem(node, path, f"parameters {positional_only} are positional-only", "the payload is keywords")

    def exports(self, entry: Entry) -> dict[str, ExportSpec]:
        exports: dict[str, ExportSpec] = {}
        for path, item in self.r.walk_mapping(entry.node, "exports"):
            if not _EXPORT_NAME.fullmatch(item.key):
                self.r.problem(item.key_node, path, "invalid export name", "use letters, digits, '_' and '-'")
                continue
            options = self.r.mapping(item.node, path, ["sql"])
            if "sql" not in options:
                if isinstance(item.node, yaml.MappingNode):
                    self.r.problem(item.key_node, f"{path}.sql", "missing", "a SELECT with :named parameters")
                continue
            sql = self.r.text(options["sql"].node, f"{path}.sql")
            if sql is None:
                continue
            if not _READ_ONLY_START.match(sql):
                self.r.problem(
                    options["sql"].node, f"{path}.sql", "must be a read-only query", "start with SELECT or WITH"
                )
                continue
            exports[item.key] = ExportSpec(item.key, sql)
        return exports
