"""Importing the handlers and exception classes that jobs.yaml names (never a path that came from a request)."""

from __future__ import annotations

import builtins
import importlib
import os
import sys
from collections.abc import Callable
from difflib import get_close_matches
from typing import Any

from jobkit.errors import ImportProblem

__all__ = ["ImportProblem", "ensure_import_path", "import_exception", "import_handler"]

#: The built-in handlers' first module paths (``jobkit.actors.<group>``), still accepted in jobs.yaml.
RENAMED_MODULES = {
    "jobkit.actors.email": "jobkit.builtin.email",
    "jobkit.actors.export": "jobkit.builtin.export",
    "jobkit.actors.cleanup": "jobkit.builtin.cleanup",
    "jobkit.actors.report": "jobkit.builtin.report",
    "jobkit.actors.notification": "jobkit.builtin.notification",
    "jobkit.actors.system": "jobkit.builtin.health",
}


def ensure_import_path(*directories: str) -> None:
    """Let handlers live next to jobs.yaml or in the working directory, as ``python -m`` would."""
    for directory in reversed([os.getcwd(), *directories]):
        path = os.path.abspath(directory)
        if path not in sys.path:
            sys.path.insert(0, path)


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise ImportProblem(f"no module named {exc.name!r}", "is it installed, or next to jobs.yaml?") from exc
        raise ImportProblem(f"importing {name!r} failed: {exc}") from exc
    except Exception as exc:  # a handler module that raises on import: report it, do not crash the loader
        raise ImportProblem(f"importing {name!r} failed: {type(exc).__name__}: {exc}") from exc


def import_handler(path: str) -> Callable[..., Any]:
    """``package.module:function`` -> the function."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ImportProblem(f"expected module:function, found {path!r}", "for example jobkit.builtin.email:send_email")
    module = _import_module(RENAMED_MODULES.get(module_name, module_name))
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            names = [n for n in dir(target) if not n.startswith("_")]
            close = get_close_matches(part, names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else ""
            raise ImportProblem(f"module {module_name!r} has no attribute {attribute!r}", hint)
        target = getattr(target, part)
    if not callable(target):
        raise ImportProblem(f"{path!r} is not callable (found {type(target).__name__} {target!r:.40})")
    return target  # type: ignore[no-any-return]


def import_exception(name: str) -> type[BaseException]:
    """A builtin name (``ValueError``) or ``module:Class`` / ``module.Class``."""
    if ":" not in name and "." not in name:
        found = getattr(builtins, name, None)
        if found is None:
            raise ImportProblem(f"{name!r} is not a builtin exception", "write module:Class for other exceptions")
    else:
        module_name, _, attribute = name.partition(":") if ":" in name else name.rpartition(".")
        found = getattr(_import_module(module_name), attribute, None)
        if found is None:
            raise ImportProblem(f"module {module_name!r} has no attribute {attribute!r}")
    if not (isinstance(found, type) and issubclass(found, BaseException)):
        raise ImportProblem(f"{name!r} is not an exception class")
    return found
