"""``jobkit up --reload``: watch jobs.yaml, schedules.yaml and the handler modules; when one changes and ``jobkit
check`` passes, have the supervisor replace the parts that read it, gracefully (running tasks finish). A broken edit
is reported and changes nothing: the running parts keep the version they loaded.

What restarts for what: jobs.yaml -> the workers, the scheduler and the API (all three load it); schedules.yaml ->
the scheduler; a handler module (any ``.py`` file in the package or folder of a task's handler outside
site-packages and jobkit itself) -> the workers. The check runs in a new interpreter, as ``jobkit check``, so it
imports the changed handlers afresh, and the supervisor's process never imports application code.

Watching uses watchfiles (inotify on Linux): the folders of the two files are watched without their subfolders
(the data dir beside jobs.yaml changes all the time), handler packages with theirs.
"""

from __future__ import annotations

import importlib.machinery
import logging
import os
import queue
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import watchfiles
import yaml

from jobkit.cli.supervisor import Supervisor
from jobkit.config.settings import Settings

__all__ = ["Reloader", "WatchSet", "watch_set"]

log = logging.getLogger("jobkit.reload")

#: What each watched file is read by.
GROUPS = {"jobs": ("workers", "scheduler", "api"), "schedules": ("scheduler",), "code": ("workers",)}


@dataclass(frozen=True)
class WatchSet:
    jobs: str
    schedules: str
    modules: frozenset[str]
    """Handler modules that are a single file (watched through their folder)."""
    packages: frozenset[str]
    """Handler packages' folders (watched with their subfolders)."""

    @property
    def flat_folders(self) -> frozenset[str]:
        files = (self.jobs, self.schedules, *self.modules)
        return frozenset(os.path.dirname(path) for path in files if os.path.isdir(os.path.dirname(path)))

    def kind(self, path: str) -> str | None:
        """``jobs``, ``schedules`` or ``code`` for a path that matters, else None."""
        if path == self.jobs:
            return "jobs"
        if path == self.schedules:
            return "schedules"
        if path in self.modules or (path.endswith(".py") and any(path.startswith(p + os.sep) for p in self.packages)):
            return "code"
        return None


def _handler_modules(jobs_path: Path) -> set[str]:
    """The top-level module of each task's handler, read from the YAML without importing anything."""
    try:
        data = yaml.safe_load(jobs_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return set()
    tasks = data.get("tasks") if isinstance(data, dict) else None
    found = set()
    for spec in tasks.values() if isinstance(tasks, dict) else ():
        handler = spec.get("handler") if isinstance(spec, dict) else None
        if isinstance(handler, str) and ":" in handler:
            found.add(handler.partition(":")[0].split(".")[0])
    return found


def _installed_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[name] for name in ("stdlib", "platstdlib", "purelib", "platlib") if name in paths}
    roots.add(str(Path(__file__).resolve().parents[1]))  # jobkit itself: its built-in handlers are not the app's
    return tuple(os.path.realpath(root) for root in roots)


def watch_set(settings: Settings) -> WatchSet:
    """What to watch for the project ``settings`` names (paths resolved, as watchfiles reports them)."""
    jobs, schedules = settings.jobs_path.resolve(), settings.schedules_path.resolve()
    search = [os.getcwd(), str(jobs.parent), *sys.path]
    installed = _installed_roots()
    modules: set[str] = set()
    packages: set[str] = set()
    for name in sorted(_handler_modules(jobs)):
        spec = importlib.machinery.PathFinder.find_spec(name, search)
        if spec is None:
            continue
        if spec.submodule_search_locations:
            folders = [os.path.realpath(folder) for folder in spec.submodule_search_locations]
            packages.update(f for f in folders if not f.startswith(installed))
        elif spec.origin and spec.origin.endswith(".py"):
            origin = os.path.realpath(spec.origin)
            if not origin.startswith(installed):
                modules.add(origin)
    return WatchSet(str(jobs), str(schedules), frozenset(modules), frozenset(packages))


class Reloader:
    """A thread that watches the project's files and asks ``supervisor`` for replacements."""

    def __init__(self, settings: Settings, env: Mapping[str, str], supervisor: Supervisor) -> None:
        self.settings = settings
        self.env = dict(env)
        self.supervisor = supervisor
        self.changes: queue.SimpleQueue[set[tuple[watchfiles.Change, str]]] = queue.SimpleQueue()
        self.ready = threading.Event()  # set once the watchers are in place (for tests and the startup line)

    def start(self) -> None:
        logging.getLogger("watchfiles").setLevel(logging.WARNING)  # its "1 change detected" says nothing more
        threading.Thread(target=self._run, name="jobkit-reload", daemon=True).start()

    def _watch(self, folders: frozenset[str], recursive: bool, stop: threading.Event, targets: WatchSet) -> None:
        def relevant(change: watchfiles.Change, path: str) -> bool:
            return targets.kind(path) is not None

        for changes in watchfiles.watch(
            *sorted(folders), watch_filter=relevant, recursive=recursive, stop_event=stop, debounce=800,
            rust_timeout=1000, raise_interrupt=False,
        ):  # fmt: skip
            self.changes.put(changes)

    def _run(self) -> None:
        while True:
            targets = watch_set(self.settings)
            stop = threading.Event()
            watchers = [
                threading.Thread(target=self._watch, args=(folders, recursive, stop, targets), daemon=True)
                for folders, recursive in ((targets.flat_folders, False), (targets.packages, True))
                if folders
            ]
            for watcher in watchers:
                watcher.start()
            self.ready.set()
            while True:
                changes = self.changes.get()
                kinds: dict[str, set[str]] = {}
                for _, path in changes:
                    kind = targets.kind(path)
                    if kind is not None:
                        kinds.setdefault(kind, set()).add(path)
                if kinds:
                    self._reload(kinds)
                if "jobs" in kinds and watch_set(self.settings) != targets:
                    break  # the handlers moved: watch the new places
            stop.set()
            for watcher in watchers:
                watcher.join()

    def _reload(self, kinds: dict[str, set[str]]) -> None:
        cwd = Path.cwd()
        names = sorted(os.path.relpath(path, cwd) for paths in kinds.values() for path in paths)
        reason = f"{', '.join(names)} changed"
        check = subprocess.run(
            [sys.executable, "-m", "jobkit.cli", "check"],
            env=self.env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if check.returncode != 0:
            problems = (check.stderr or check.stdout).strip()
            log.error(
                "%s, but `jobkit check` finds problems (the running parts keep the previous version):\n%s",
                reason,
                problems,
            )
            return
        groups = {group for kind in kinds for group in GROUPS[kind]}
        self.supervisor.request_replace(groups, reason)
