"""Migrating from periodiq: actors declared with ``periodic=cron("...")`` become scheduler entries.

``jobkit scheduler --periodiq myapp.tasks`` imports the module and turns each such actor into an entry with the id
``periodiq.<actor name>``. The spec is re-read with jobkit's own rules (Sunday as 0 or 7, cron's OR of day-of-month
and day-of-week), and the actor's name must be a task in jobs.yaml, whose workers run it. periodiq itself must not
run beside jobkit's scheduler: see the README.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

import dramatiq

from jobkit.config.cron import parse_spec
from jobkit.config.model import Project, ScheduleSpec
from jobkit.errors import CronError, PeriodiqError

__all__ = ["PeriodiqError", "periodiq_schedules"]


def periodiq_schedules(modules: Iterable[str], project: Project) -> list[ScheduleSpec]:
    """The entries of every ``periodic=`` actor defined in ``modules``; all problems are raised together."""
    entries: list[ScheduleSpec] = []
    problems: list[str] = []
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            problems.append(f"--periodiq {module_name}: cannot import it: {type(exc).__name__}: {exc}")
            continue
        actors = [value for value in vars(module).values() if isinstance(value, dramatiq.Actor)]
        for actor in actors:
            periodic = actor.options.get("periodic")
            if periodic is None:
                continue
            name = actor.actor_name
            text = str(periodic)
            where = f"--periodiq {module_name}: actor {name!r}"
            if name not in project.tasks:
                problems.append(
                    f"{where}: not a task in {project.source} "
                    f"(declare it: tasks: {{{name}: {{handler: '{module_name}:{actor.fn.__name__}.fn'}}}})"
                )
                continue
            try:
                parse_spec(text)
            except CronError as exc:
                problems.append(f"{where}: periodic={text!r}: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
                continue
            entries.append(ScheduleSpec(f"periodiq.{name}", name, text, {}, None, "UTC", f"periodiq:{name}"))
    if problems:
        raise PeriodiqError("\n".join(problems))
    return entries
