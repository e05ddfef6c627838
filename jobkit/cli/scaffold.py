"""``jobkit init`` (a starter project in this folder) and ``jobkit new TASK --queue Q`` (one more task and its handler
stub), as Laravel's ``make:job`` does.

``jobkit new`` edits jobs.yaml as text: the entry goes after the last task, in the style of the entries already
there (block or one-line flow, their indentation), so every comment and blank line stays where it was. The result is
loaded as the workers will load it before anything is kept; if it does not load, both files are put back.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import keyword
import re
import sys
from importlib.resources import files
from pathlib import Path

import yaml

from jobkit.cli.project import load_settings, project_of
from jobkit.config.jobs_file import TASK_NAME
from jobkit.errors import ConfigError, UsageError, did_you_mean

__all__ = ["add_scaffold_commands", "add_task_text", "cmd_init", "cmd_new", "handler_for"]

_STARTER = files("jobkit.cli.starter")
#: The package ``jobkit init`` and ``jobkit new`` put handler stubs in.
STUB_PACKAGE = "tasks"
_IDENTIFIER = re.compile(r"[^a-zA-Z0-9_]")


def _python_name(text: str) -> str:
    name = _IDENTIFIER.sub("_", text).strip("_").lower() or "run"
    if name[0].isdigit():
        name = f"t_{name}"
    return f"{name}_" if keyword.iskeyword(name) else name


def handler_for(task: str) -> str:
    """``video:process`` -> ``tasks.video:process``; ``resize`` -> ``tasks.resize:run``."""
    group, _, rest = task.partition(":")
    function = _python_name(rest.replace(":", "_")) if rest else "run"
    return f"{STUB_PACKAGE}.{_python_name(group)}:{function}"


# -- jobs.yaml as text -----------------------------------------------------------------------------------------------
def _last_line(node: yaml.Node) -> int:
    """The 0-based line the node's text ends on (a block scalar's end mark is the start of the next line)."""
    if isinstance(node, yaml.MappingNode) and not node.flow_style:
        return max(_last_line(part) for pair in node.value for part in pair)
    if isinstance(node, yaml.SequenceNode) and not node.flow_style:
        return max(_last_line(item) for item in node.value)
    end = node.end_mark
    return int(end.line - 1 if end.column == 0 and end.line > node.start_mark.line else end.line)


def add_task_text(text: str, task: str, handler: str, queue: str | None) -> str:
    """jobs.yaml's text with ``task`` added after the last task, everything else untouched."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        raise UsageError("jobs.yaml is not a block mapping of sections (queues:, tasks: …); add the task by hand")
    fields = [("handler", handler)] + ([("queue", queue)] if queue else [])
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    tasks = next((value for key, value in root.value if key.value == "tasks"), None)
    if tasks is None or (isinstance(tasks, yaml.ScalarNode) and tasks.value in ("", "~", "null")):
        entry = [f"  {task}:\n", *(f"    {key}: {value}\n" for key, value in fields)]
        if tasks is None:
            return "".join([*lines, "tasks:\n", *entry])
        at = tasks.start_mark.line + 1  # `tasks:` with nothing under it
        return "".join([*lines[:at], *entry, *lines[at:]])
    if not isinstance(tasks, yaml.MappingNode) or tasks.flow_style:
        line = tasks.start_mark.line + 1
        raise UsageError(f"jobs.yaml:{line}: tasks: is not written as a block mapping; add the task by hand")
    for key, _ in tasks.value:
        if key.value == task:
            raise UsageError(f"task {task!r} is already declared at jobs.yaml:{key.start_mark.line + 1}")
    last_key, last_value = tasks.value[-1]
    indent = " " * last_key.start_mark.column
    if isinstance(last_value, yaml.MappingNode) and last_value.flow_style:
        inside = ", ".join(f'{key}: "{value}"' if key == "handler" else f"{key}: {value}" for key, value in fields)
        entry = [f"{indent}{task}: {{{inside}}}\n"]
    else:
        child = last_key.start_mark.column + 2
        if isinstance(last_value, yaml.MappingNode) and last_value.value:
            child = last_value.value[0][0].start_mark.column
        entry = [f"{indent}{task}:\n", *(f"{' ' * child}{key}: {value}\n" for key, value in fields)]
    at = _last_line(last_value) + 1
    return "".join([*lines[:at], *entry, *lines[at:]])


# -- handler stubs ---------------------------------------------------------------------------------------------------
def _stub_function(task: str, function: str, with_logger: bool) -> str:
    logger = "log" if with_logger else "logging.getLogger(__name__)"
    return (
        f"def {function}(**payload: object) -> None:\n"
        f'    """Task {task} (jobs.yaml). Name the payload fields as parameters, e.g.\n'
        f"    ``def {function}(item_id: int, force: bool = False)``: jobkit checks each dispatch against them.\n"
        f'    Raise ``jobkit.SkipRetry("why")`` for a permanent failure; any other exception retries (README: "Add a\n'
        f'    job")."""\n'
        f'    {logger}.info("{task} ran with %s", payload)\n'
    )


def _module_header(module: str) -> str:
    return (
        f'"""Task handlers ({module}), written by ``jobkit new``; jobs.yaml names each as {module}:function."""\n\n'
        "from __future__ import annotations\n\nimport logging\n\nlog = logging.getLogger(__name__)\n"
    )


def _write_stub(root: Path, task: str, handler: str) -> list[Path]:
    """Write the handler's module (and the packages above it) unless it already has the function; the files
    written, so that a failure can take them back."""
    module, _, function = handler.partition(":")
    parts = module.split(".")
    elsewhere = [p for p in sys.path if p and Path(p).resolve() != root.resolve()]
    found = importlib.machinery.PathFinder.find_spec(parts[0], elsewhere)
    if found is not None and not (root / parts[0]).exists() and not (root / f"{parts[0]}.py").exists():
        where = found.origin or next(iter(found.submodule_search_locations or []), "?")
        raise UsageError(
            f"{parts[0]} is installed at {where}: write {function}() there yourself (jobs.yaml is left as it was)"
        )
    written: list[Path] = []
    folder = root
    for package in parts[:-1]:
        folder = folder / package
        if (folder.parent / f"{package}.py").exists():
            raise UsageError(f"{package}.py is a module, not a package: choose another place with --handler")
        if not folder.is_dir():
            folder.mkdir()
        init = folder / "__init__.py"
        if not init.exists():
            init.write_text('"""Task handlers (see jobs.yaml)."""\n', encoding="utf-8")
            written.append(init)
    path = folder / f"{parts[-1]}.py"
    if not path.exists():
        path.write_text(_module_header(module) + "\n\n" + _stub_function(task, function, True), encoding="utf-8")
        return [*written, path]
    text = path.read_text(encoding="utf-8")
    if re.search(rf"^(async\s+)?def {re.escape(function)}\b", text, re.MULTILINE):
        return written  # the function is there already: jobs.yaml only
    with_logger = bool(re.search(r"^log = logging\.getLogger", text, re.MULTILINE))
    if not with_logger and not re.search(r"^import logging$", text, re.MULTILINE):
        text = re.sub(r"^(from __future__ import annotations\n)?", r"\1import logging\n", text, count=1)
    path.write_text(text.rstrip("\n") + "\n\n\n" + _stub_function(task, function, with_logger), encoding="utf-8")
    return written


# -- commands --------------------------------------------------------------------------------------------------------
def cmd_init(args: argparse.Namespace) -> int:
    root = Path.cwd()
    if (root / "jobs.yaml").exists():
        raise UsageError(
            f"{root / 'jobs.yaml'} already exists: `jobkit init` starts a new project; add tasks with `jobkit new`"
        )
    plan = [
        ("jobs.yaml", "jobs.yaml"),
        ("schedules.yaml", "schedules.yaml"),
        (".env.example", "env.example"),
        (f"{STUB_PACKAGE}/__init__.py", None),
        (f"{STUB_PACKAGE}/example.py", "example.py"),
    ]
    for target, source in plan:
        path = root / target
        if path.exists():
            print(f"kept {target} (it exists)")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        text = _STARTER.joinpath(source).read_text(encoding="utf-8") if source else '"""Task handlers."""\n'
        path.write_text(text, encoding="utf-8")
        print(f"wrote {target}")
    print("next: `jobkit new TASK --queue Q` adds a task, `jobkit check` validates, `jobkit up` runs it all")
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    task: str = args.task
    if not TASK_NAME.fullmatch(task):
        raise UsageError(f"task name {task!r}: use letters, digits, '_', '-', '.' and ':' like video:process")
    settings = load_settings()
    jobs = settings.jobs_path
    try:
        project = project_of(settings)
    except ConfigError as exc:
        if not jobs.exists():
            raise
        raise UsageError(f"jobs.yaml has problems; fix them first (`jobkit check` lists them):\n{exc}") from None
    if args.queue is not None and args.queue not in project.queues:
        close = did_you_mean(args.queue, project.queues)
        raise UsageError(
            f"--queue {args.queue!r}: not a queue of jobs.yaml ({close or 'declared: ' + ', '.join(project.queues)})"
        )
    if task in project.tasks:
        raise UsageError(f"task {task!r} is already declared in {jobs}")
    handler = args.handler or handler_for(task)
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", handler):
        raise UsageError(f"--handler {handler!r}: expected module:function, like myapp.video:process_video")
    before = jobs.read_text(encoding="utf-8")
    after = add_task_text(before, task, handler, args.queue)
    written = _write_stub(jobs.resolve().parent, task, handler)
    jobs.write_text(after, encoding="utf-8")
    importlib.invalidate_caches()  # the import system may have listed the folder before the stub was in it
    sys.modules.pop(handler.partition(":")[0], None)  # check the module as it is now written
    try:
        project_of(settings)
    except ConfigError:
        jobs.write_text(before, encoding="utf-8")
        for path in reversed(written):
            path.unlink()
        raise
    module = handler.partition(":")[0].replace(".", "/") + ".py"
    print(f"added task {task} to {jobs} (handler {handler} in {module})")
    print("restart the workers to run it (`jobkit up --reload` does it by itself)")
    return 0


def add_scaffold_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    init = sub.add_parser("init", help="write a starter jobs.yaml, schedules.yaml, .env.example and example handler")
    init.set_defaults(func=cmd_init)
    new = sub.add_parser("new", help="add a task to jobs.yaml (comments kept) and write its handler stub")
    new.add_argument("task", help="the task's name, e.g. video:process")
    new.add_argument("--queue", help="its queue (default: the defaults' queue)")
    new.add_argument("--handler", help="module:function instead of tasks.<group>:<name>")
    new.set_defaults(func=cmd_new)
