"""The package's shape: imports run one way (no cycles, function-level imports counted), the config layer and the
facade stay light, and the public surface is what the README documents."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import jobkit

PACKAGE = Path(jobkit.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every jobkit module ``module`` imports, wherever the import statement is (function bodies and TYPE_CHECKING
    blocks included)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            names = [target, *(f"{target}.{alias.name}" for alias in node.names)]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and not name.startswith(module + "."):
                targets.add(name)
    return targets


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_there_are_no_import_cycles_inside_jobkit_counting_function_level_imports() -> None:
    known = _modules()
    graph = {module: _imports(module, path, known) for module, path in known.items()}
    assert len(graph) > 50  # the walk saw the package
    assert _cycles(graph) == []


def test_nothing_inside_the_package_imports_the_facade_root() -> None:
    known = _modules()
    importers = [
        module for module, path in known.items() if module != "jobkit" and "jobkit" in _imports(module, path, known)
    ]
    assert importers == []


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    return set(done.stdout.split())


def test_the_config_layer_loads_neither_redis_dramatiq_nor_litestar() -> None:
    config = sorted(p.stem for p in (PACKAGE / "config").glob("*.py") if p.stem != "__init__")
    loaded = _loaded_after("; ".join(f"import jobkit.config.{name}" for name in config))
    assert {"jobkit.config.jobs_file", "jobkit.config.schedules_file", "jobkit.config.settings"} <= loaded
    assert {m.split(".")[0] for m in loaded} & {"redis", "dramatiq", "litestar"} == set()


def test_import_jobkit_and_jobkit_durations_load_only_the_errors() -> None:
    loaded = {m for m in _loaded_after("import jobkit.durations") if m.startswith("jobkit")}
    assert loaded == {"jobkit", "jobkit.errors", "jobkit.durations"}


def test_the_public_surface_is_pinned() -> None:
    assert jobkit.__all__ == [
        "Chain", "Client", "ConfigError", "DispatchError", "DuplicateTask", "JobkitError", "PayloadError", "Queues",
        "ResultMissing", "ResultTimeout", "ScheduleError", "ScheduleInfo", "SkipRetry", "TaskCanceled", "TaskFailed",
        "TaskNotFound", "TaskRef", "TaskStateError", "UnknownQueue", "UnknownTask", "cancelled", "chain", "dispatch",
        "dispatch_many", "get_client", "group", "jobs", "list_schedules", "progress", "queues", "result",
        "schedule_once", "schedule_recurring", "set_client", "unschedule",
    ]  # fmt: skip
    for name in jobkit.__all__:
        assert getattr(jobkit, name) is not None, name


def test_every_error_is_a_jobkit_error_with_a_docstring_for_its_default_message() -> None:
    from jobkit import errors

    classes = [getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)]
    exceptions = [cls for cls in classes if issubclass(cls, BaseException)]
    assert len(exceptions) > 20
    for cls in exceptions:
        assert issubclass(cls, errors.JobkitError), cls
        assert (cls.__doc__ or "").strip(), cls
    assert str(errors.TaskNotFound()) == errors.TaskNotFound.__doc__


def test_no_exception_class_is_defined_outside_errors_py() -> None:
    outside = []
    for module, path in _modules().items():
        if module == "jobkit.errors":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(base, ast.Name) and base.id.endswith(("Error", "Exception")) for base in node.bases
            ):
                outside.append(f"{module}.{node.name}")
    assert outside == []
