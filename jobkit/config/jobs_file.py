"""jobs.yaml -> :class:`~jobkit.model.Project`; every problem is reported as ``FILE:LINE:COL: path: message (hint)``."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from jobkit.config.alerts_file import parse_alerts
from jobkit.config.imports import ensure_import_path, import_exception, import_handler
from jobkit.config.model import (
    DEFAULT_DURABILITY,
    DEFAULT_EXPORT_TIMEOUT,
    DEFAULT_MAX_PAYLOAD,
    DEFAULT_QUEUE,
    DEFAULT_RETENTION,
    DEFAULT_RETENTION_MAX,
    DEFAULT_RETRY,
    DEFAULT_TIMEOUT,
    ExportSpec,
    PriorityMode,
    Project,
    QueueSpec,
    RateLimit,
    RetryPolicy,
    TaskSpec,
    WorkerSpec,
    WorkflowSpec,
    WorkflowStep,
)
from jobkit.config.placeholders import references
from jobkit.config.yamlnodes import Entry, Reader
from jobkit.errors import ImportProblem, TemplateError, did_you_mean

__all__ = ["QUEUE_NAME", "TASK_NAME", "load_project"]

QUEUE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_-]*")
TASK_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_.-]*(?::[a-zA-Z0-9_.-]+)*")
_RESERVED = re.compile(r"__.*__")
_EXPORT_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_-]*")
_READ_ONLY_START = re.compile(r"\s*(select|with)\b", re.IGNORECASE)

TOP_KEYS = ["queues", "priority", "worker", "defaults", "tasks", "exports", "workflows", "alerts", "max_payload"]
WORKER_KEYS = ["processes", "threads", "shutdown_timeout"]
POLICY_KEYS = ["queue", "max_retries", "backoff", "timeout", "retention", "retry_on", "skip_retry_on", "durability"]
DURABILITIES = ["async", "replicated"]
# Flow control (issue 8), per task only: a default uniqueness or rate would silently couple unrelated tasks.
FLOW_KEYS = ["unique", "unique_key", "rate_limit", "concurrency"]
TASK_KEYS = ["handler", *POLICY_KEYS, "api", *FLOW_KEYS, "sensitive", "max_payload"]
_SENSITIVE_PATH = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
WORKFLOW_KEYS = ["steps", "api"]
STEP_KEYS = ["task", "payload"]
_RATE = re.compile(r"\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*")
_RATE_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
BACKOFF_KEYS = ["min", "max"]
RETENTION_KEYS = ["for", "max"]
#: The most completed tasks a queue may keep (retention.max): 10 million records of ~0.3 kB are a few GB of Redis.
RETENTION_MAX_LIMIT = 10_000_000
PRIORITIES = ["weighted", "strict"]

#: The policy of a task that sets nothing and inherits nothing: the model's defaults, keyed like a policy mapping.
_BUILTIN_POLICY: dict[str, Any] = {
    "queue": DEFAULT_QUEUE,
    "max_retries": DEFAULT_RETRY.max_retries,
    "backoff.min": DEFAULT_RETRY.backoff_min,
    "backoff.max": DEFAULT_RETRY.backoff_max,
    "timeout": DEFAULT_TIMEOUT,
    "retention": DEFAULT_RETENTION,
    "retention.max": DEFAULT_RETENTION_MAX,
    "retry_on": DEFAULT_RETRY.retry_on,
    "skip_retry_on": DEFAULT_RETRY.skip_retry_on,
    "durability": DEFAULT_DURABILITY,
}


@dataclass
class _Policy:
    """Policy values read from one mapping (``defaults`` or a task), keyed like ``_BUILTIN_POLICY``."""

    values: dict[str, Any]
    nodes: dict[str, yaml.Node]


_MISSING = (
    "run `jobkit init` to start a project in this folder, or name the project's folder with --project DIR or "
    "JOBKIT_PROJECT"
)


def load_project(path: str | Path, *, sealing_key: bool = True) -> Project:
    """Read and check jobs.yaml; raises :class:`~jobkit.errors.ConfigError` listing every problem. With
    ``sealing_key=False`` (no encryption key configured), a ``sensitive:`` key is one of them."""
    path = Path(path)
    reader, root = Reader.open(path, _MISSING)
    ensure_import_path(str(path.parent))
    project = _Loader(reader, str(path), sealing_key).project(root)
    reader.raise_if_any()
    assert project is not None
    return project


class _Loader:
    def __init__(self, reader: Reader, source: str, sealing_key: bool = True) -> None:
        self.r = reader
        self.source = source
        self.sealing_key = sealing_key
        self.max_payload = DEFAULT_MAX_PAYLOAD

    def project(self, root: yaml.Node) -> Project | None:
        top = self.r.mapping(root, "", TOP_KEYS)
        queues = self.queues(top["queues"]) if "queues" in top else {}
        if "queues" not in top and isinstance(root, yaml.MappingNode):
            self.r.problem(root, "queues", "missing", "declare at least one queue, e.g. queues: {default: {weight: 1}}")
        priority = self.priority(top["priority"]) if "priority" in top else "weighted"
        worker = self.worker(top["worker"]) if "worker" in top else WorkerSpec()
        if "max_payload" in top:
            self.max_payload = self.r.size(top["max_payload"].node, "max_payload") or DEFAULT_MAX_PAYLOAD
        defaults = self.policy(top["defaults"].node, "defaults", POLICY_KEYS) if "defaults" in top else None
        if defaults is not None:
            self.check_queue(defaults, "defaults", queues)
        tasks = self.tasks(top["tasks"], defaults, queues) if "tasks" in top else {}
        exports = self.exports(top["exports"]) if "exports" in top else {}
        workflows = self.workflows(top["workflows"], tasks) if "workflows" in top else {}
        alerts = parse_alerts(self.r, top["alerts"].node, queues, tasks) if "alerts" in top else {}  # issue 6
        if self.r.problems or priority is None or worker is None:
            return None
        default_queue = defaults.values.get("queue", DEFAULT_QUEUE) if defaults else DEFAULT_QUEUE
        return Project(
            source=self.source,
            queues=queues,
            tasks=tasks,
            priority=priority,
            worker=worker,
            exports=exports,
            default_queue=default_queue,
            workflows=workflows,
            alerts=alerts,
            max_payload=self.max_payload,
        )

    # -- sections ---------------------------------------------------------------------------------------------------
    def queues(self, entry: Entry) -> dict[str, QueueSpec]:
        queues: dict[str, QueueSpec] = {}
        for path, item in self.r.walk_mapping(entry.node, "queues"):
            if not QUEUE_NAME.fullmatch(item.key):
                self.r.problem(item.key_node, path, "invalid queue name", "use letters, digits, '_' and '-'")
                continue
            if _RESERVED.fullmatch(item.key):
                self.r.problem(item.key_node, path, "names like __name__ are reserved", "for jobkit's own Redis keys")
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

    def priority(self, entry: Entry) -> PriorityMode | None:
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
            elif item.key == "timeout":
                value = self.r.duration(item.node, key_path, timedelta(milliseconds=1))
            elif item.key == "retention":
                self.retention(item.node, key_path, policy)
                continue
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
            elif item.key == "unique":
                value = self.r.duration(item.node, key_path, timedelta(seconds=1))
            elif item.key == "unique_key":
                value = self.template_text(item.node, key_path)
            elif item.key == "rate_limit":
                value = self.rate_limit(item.node, key_path)
            elif item.key == "concurrency":
                value = self.r.integer(item.node, key_path, 1, 100_000)
            elif item.key == "sensitive":
                value = self.sensitive(item.node, key_path)
            elif item.key == "max_payload":
                value = self.r.size(item.node, key_path)
            elif item.key == "durability":
                value = self.r.text(item.node, key_path)
                if value is not None and value not in DURABILITIES:
                    hint = did_you_mean(value, DURABILITIES) or "async or replicated"
                    self.r.problem(item.node, key_path, f"unknown durability {value!r}", hint)
                    value = None
            if value is not None:
                policy.values[item.key] = value
                policy.nodes[item.key] = item.node
        return policy

    def retention(self, node: yaml.Node, path: str, policy: _Policy) -> None:
        """``retention: 24h`` (how long), or ``retention: {for: 24h, max: 10000}`` (how long and how many per queue,
        either may be left to the defaults)."""
        if not isinstance(node, yaml.MappingNode):
            value = self.r.duration(node, path)
            if value is not None:
                policy.values["retention"], policy.nodes["retention"] = value, node
            return
        for sub_path, bound in self.r.walk_mapping(node, path):
            if bound.key not in RETENTION_KEYS:
                hint = did_you_mean(bound.key, RETENTION_KEYS) or "expected for (a duration) or max (a count)"
                self.r.problem(bound.key_node, sub_path, "unknown key", hint)
                continue
            found: Any = (
                self.r.duration(bound.node, sub_path)
                if bound.key == "for"
                else self.r.integer(bound.node, sub_path, 0, RETENTION_MAX_LIMIT)
            )
            if found is not None:
                name = "retention" if bound.key == "for" else "retention.max"
                policy.values[name], policy.nodes[name] = found, bound.node

    def sensitive(self, node: yaml.Node, path: str) -> tuple[str, ...] | None:
        """Payload paths: ``token``, ``headers.authorization``, ``url.query`` (the query string of ``url``)."""
        names = self.r.names(node, path)
        if names is None:
            return None
        items = [node] if isinstance(node, yaml.ScalarNode) else list(node.value)
        for name, item in zip(names, items, strict=True):
            if not _SENSITIVE_PATH.fullmatch(name):
                self.r.problem(
                    item,
                    path,
                    f"invalid payload path {name!r}",
                    "field names joined by dots, e.g. headers.authorization",
                )
                return None
        return names

    def exceptions(self, node: yaml.Node, path: str) -> tuple[str, ...] | None:
        names = self.r.names(node, path)
        if names is None:
            return None
        items = [node] if isinstance(node, yaml.ScalarNode) else list(node.value)
        found = True
        for name, item in zip(names, items, strict=True):
            try:
                import_exception(name)
            except ImportProblem as exc:  # report every bad item, not only the first
                self.r.problem(item, path, exc.message, exc.hint)
                found = False
        return names if found else None

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
            if "queue" not in own.values and defaults is None and queues and DEFAULT_QUEUE not in queues:
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
            declared = self.check_handler(handler, own.nodes["handler"], f"{path}.handler")
            sensitive = tuple(dict.fromkeys((*declared, *own.values.get("sensitive", ()))))
            if "sensitive" in own.nodes and not self.sealing_key:
                self.r.problem(
                    own.nodes["sensitive"],
                    f"{path}.sensitive",
                    "no encryption key to seal these fields with",
                    "set JOBKIT_ENCRYPTION_KEY, or JOBKIT_SECRET (`jobkit up` makes one)",
                )
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
                retention_max=values["retention.max"],
                api=bool(values.get("api", False)),
                unique=own.values.get("unique"),
                unique_key=own.values.get("unique_key"),
                rate_limit=own.values.get("rate_limit"),
                concurrency=own.values.get("concurrency"),
                sensitive=sensitive,
                max_payload=own.values.get("max_payload", self.max_payload),
                durability=values["durability"],
            )
            if "unique_key" in own.values and "unique" not in own.values:
                self.r.problem(
                    own.nodes["unique_key"],
                    f"{path}.unique_key",
                    "has no effect without unique",
                    "add e.g. unique: 10m",
                )
        return tasks

    def check_handler(self, handler: str, node: yaml.Node, path: str) -> tuple[str, ...]:
        """Import the handler and check it takes keywords; returns the sensitive fields it declares itself (the
        built-in tasks' ``jobkit_sensitive``)."""
        try:
            function = import_handler(handler)
        except ImportProblem as exc:
            self.r.problem(node, path, exc.message, exc.hint)
            return ()
        declared = tuple(getattr(function, "jobkit_sensitive", ()))
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):
            return declared
        positional_only = [p.name for p in signature.parameters.values() if p.kind is p.POSITIONAL_ONLY]
        if positional_only:
            self.r.problem(node, path, f"parameters {positional_only} are positional-only", "the payload is keywords")
        return declared

    def exports(self, entry: Entry) -> dict[str, ExportSpec]:
        exports: dict[str, ExportSpec] = {}
        for path, item in self.r.walk_mapping(entry.node, "exports"):
            if not _EXPORT_NAME.fullmatch(item.key):
                self.r.problem(item.key_node, path, "invalid export name", "use letters, digits, '_' and '-'")
                continue
            options = self.r.mapping(item.node, path, ["sql", "timeout"])
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
            timeout = DEFAULT_EXPORT_TIMEOUT
            if "timeout" in options:
                given = self.r.duration(options["timeout"].node, f"{path}.timeout", minimum=timedelta(milliseconds=1))
                if given is None:
                    continue
                timeout = given
            mark = options["sql"].node.start_mark
            exports[item.key] = ExportSpec(item.key, sql, timeout, where=(self.r.file, mark.line + 1, mark.column + 1))
        return exports

    # -- flow control (issue 8) -------------------------------------------------------------------------------------
    def rate_limit(self, node: yaml.Node, path: str) -> RateLimit | None:
        hint = "like 100/m, 10/s or 1000/h"
        if not (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str"):
            self.r.wrong_type(node, path, "a rate", hint)
            return None
        match = _RATE.fullmatch(node.value)
        if match is None:
            self.r.problem(node, path, f"expected a rate, found {node.value!r}", hint)
            return None
        count = int(match.group(1))
        if count < 1:
            self.r.problem(node, path, f"expected at least 1 per {match.group(2)}, found {count}", hint)
            return None
        return RateLimit(count, timedelta(seconds=_RATE_UNITS[match.group(2)]))

    def template_text(self, node: yaml.Node, path: str) -> str | None:
        text = self.r.text(node, path, 'a template like "{{ user_id }}"')
        if text is None:
            return None
        try:
            if not references(text):
                self.r.problem(node, path, "refers to no payload field", 'e.g. "{{ user_id }}"')
                return None
        except TemplateError as exc:
            self.r.problem(node, path, str(exc), "write {{ field }} or {{ field.sub }}")
            return None
        return text

    def workflows(self, entry: Entry, tasks: dict[str, TaskSpec]) -> dict[str, WorkflowSpec]:
        workflows: dict[str, WorkflowSpec] = {}
        for path, item in self.r.walk_mapping(entry.node, "workflows"):
            if not TASK_NAME.fullmatch(item.key):
                self.r.problem(item.key_node, path, "invalid workflow name", "use group:action, e.g. report:build")
                continue
            if item.key in tasks:
                self.r.problem(item.key_node, path, "a task has the same name", "workflows and tasks share names")
                continue
            api: bool | None = False
            if isinstance(item.node, yaml.SequenceNode):  # the steps alone
                steps_node: yaml.Node | None = item.node
                steps_path = path
            else:
                options = self.r.mapping(item.node, path, WORKFLOW_KEYS)
                api = self.r.boolean(options["api"].node, f"{path}.api") if "api" in options else False
                steps_node = options["steps"].node if "steps" in options else None
                steps_path = f"{path}.steps"
                if steps_node is None and isinstance(item.node, yaml.MappingNode):
                    self.r.problem(item.key_node, steps_path, "missing", "a list of steps, each a task or a group")
            if steps_node is None:
                continue
            steps: list[WorkflowStep] = []
            nodes = self.r.sequence(steps_node, steps_path)
            if not nodes and isinstance(steps_node, yaml.SequenceNode):
                self.r.problem(steps_node, steps_path, "no step", "a list of steps, each a task or a group")
            for index, step_node in enumerate(nodes):
                step = self.workflow_step(step_node, f"{steps_path}[{index}]", tasks, first=index == 0)
                if step is not None:
                    steps.append(step)
            if len(steps) == len(nodes) and steps and api is not None:
                workflows[item.key] = WorkflowSpec(item.key, tuple(steps), api)
        return workflows

    def workflow_step(
        self, node: yaml.Node, path: str, tasks: dict[str, TaskSpec], *, first: bool
    ) -> WorkflowStep | None:
        if isinstance(node, yaml.MappingNode) and any(k.value == "group" for k, _ in node.value):
            options = self.r.mapping(node, path, ["group"])
            members = self.r.sequence(options["group"].node, f"{path}.group") if "group" in options else []
            if len(members) < 2 and "group" in options:
                self.r.problem(options["group"].node, f"{path}.group", "a group needs at least 2 tasks")
                return None
            found = [
                self.step_task(member, f"{path}.group[{i}]", tasks, first=first) for i, member in enumerate(members)
            ]
            if not found or any(task is None for task in found):
                return None
            return WorkflowStep(tuple(task for task in found if task is not None), group=True)
        task = self.step_task(node, path, tasks, first=first)
        return WorkflowStep((task,)) if task is not None else None

    def step_task(
        self, node: yaml.Node, path: str, tasks: dict[str, TaskSpec], *, first: bool
    ) -> tuple[str, dict[str, Any]] | None:
        if isinstance(node, yaml.ScalarNode):  # `- email:send`, a task with no payload
            options = {"task": Entry("task", node, node)}
        else:
            options = self.r.mapping(node, path, [*STEP_KEYS, "group"])
            if "task" not in options:
                if isinstance(node, yaml.MappingNode):
                    self.r.problem(node, f"{path}.task", "missing", "each step names a task or is a group")
                return None
        name = self.r.text(options["task"].node, f"{path}.task")
        if name is None:
            return None
        if name not in tasks:
            hint = did_you_mean(name, set(tasks)) or "declare it under tasks:"
            self.r.problem(options["task"].node, f"{path}.task", f"unknown task {name!r}", hint)
            return None
        payload: dict[str, Any] = {}
        if "payload" in options:
            payload_node = options["payload"].node
            if not isinstance(payload_node, yaml.MappingNode):
                self.r.wrong_type(payload_node, f"{path}.payload", "a mapping")
                return None
            payload = dict(self.r.value(payload_node))
            try:
                roots = {ref.split(".")[0] for ref in references(payload)}
            except TemplateError as exc:
                self.r.problem(payload_node, f"{path}.payload", str(exc), "write {{ input.x }} or {{ prev }}")
                return None
            unknown = roots - {"input", "prev"}
            if unknown:
                bad = sorted(unknown)[0]
                self.r.problem(payload_node, f"{path}.payload", f"unknown reference {bad!r}", "use input or prev")
                return None
            if first and "prev" in roots:
                self.r.problem(payload_node, f"{path}.payload", "the first step has no previous result", "use input")
                return None
        return name, payload
