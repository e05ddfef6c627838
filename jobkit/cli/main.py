"""The ``jobkit`` command. Exit codes: 0 ok, 1 a user error (message on stderr), 2 bad usage."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from jobkit.bootstrap import open_client
from jobkit.builtin.database import check_exports
from jobkit.cli.ops import add_commands
from jobkit.cli.processes import add_process_commands
from jobkit.cli.project import enter_project, load_settings, project_of, schedule_file
from jobkit.cli.scaffold import add_scaffold_commands
from jobkit.config.logs import configure_logging
from jobkit.config.model import Project
from jobkit.durations import parse_duration
from jobkit.errors import ConfigError, DispatchError, DurationError, JobkitError, Problem, UsageError
from jobkit.scheduling.dynamic import Schedules
from jobkit.scheduling.fire_loop import Scheduler
from jobkit.scheduling.periodiq import periodiq_schedules
from jobkit.services.redis_policy import check_eviction_policy

__all__ = ["main"]

log = logging.getLogger("jobkit.scheduler")


def cmd_check(args: argparse.Namespace) -> int:
    settings = load_settings()
    problems: list[Problem] = []
    project: Project | None = None
    try:
        project = project_of(settings)
    except ConfigError as exc:
        problems.extend(exc.problems)
    schedules = None
    try:  # without a project (jobs.yaml broken) the schedules are still checked, minus tasks, queues and payloads
        schedules = schedule_file(settings, project)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    assert project is not None
    print(f"{settings.jobs_path}: ok ({len(project.queues)} queues, {len(project.tasks)} tasks)")
    if schedules is None:
        print(f"{settings.schedules_path}: not found (nothing is scheduled from a file)")
    else:
        print(f"{settings.schedules_path}: ok ({len(schedules.schedules)} schedules)")
    if args.db:
        database_problems = check_exports(settings, project.exports)
        if database_problems:
            raise ConfigError(database_problems)
        print(f"{settings.database_shown}: ok ({len(project.exports)} exports compiled by the database)")
    return 0


def _payloads(path: str) -> tuple[list[dict[str, Any]], list[int]]:
    """The payloads of a JSON Lines file (``-``: standard input), one object per line, and the line number of each
    (blank lines are skipped)."""
    try:
        lines = sys.stdin.read().splitlines() if path == "-" else Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--payloads {path}: cannot read it ({exc})") from None
    payloads: list[dict[str, Any]] = []
    numbers: list[int] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            payload = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{number}:{exc.pos + 1}: not JSON: {exc.msg}") from None
        if not isinstance(payload, dict):
            raise UsageError(f"{path}:{number}: expected a JSON object of fields, found {type(payload).__name__}")
        payloads.append(payload)
        numbers.append(number)
    if not payloads:
        raise UsageError(f"--payloads {path}: no payloads in it (one JSON object per line)")
    return payloads, numbers


def cmd_dispatch(args: argparse.Namespace) -> int:
    if args.payload and args.payloads:
        raise UsageError("--payload and --payloads: give one payload or a file of them, not both")
    try:
        payload = json.loads(args.payload) if args.payload else {}
    except json.JSONDecodeError as exc:
        raise UsageError(f"--payload is not JSON: {exc.msg} at character {exc.pos + 1}") from None
    if not isinstance(payload, dict):
        raise UsageError(f'--payload must be a JSON object like \'{{"to": "a@b.c"}}\', found {type(payload).__name__}')
    options: dict[str, Any] = {}
    if args.delay:
        try:
            options["delay"] = parse_duration(args.delay)
        except DurationError as exc:
            raise UsageError(f"--delay: {exc}") from None
    if args.at:
        try:
            options["at"] = datetime.fromisoformat(args.at)
        except ValueError:
            raise UsageError(f"--at: expected an ISO time like 2026-01-31T09:00:00+00:00, found {args.at!r}") from None
    if args.queue:
        options["queue"] = args.queue
    client = open_client()
    if args.payloads:
        payloads, numbers = _payloads(args.payloads)
        try:
            refs = client.dispatch_many(args.task, payloads, **options)
        except DispatchError as exc:  # "payload 3: ..." (counted from 0) -> the file's line
            found = re.match(r"payload (\d+): (.*)", exc.message, re.DOTALL)
            if found is None:
                raise
            line = numbers[int(found.group(1))]
            raise UsageError(f"{args.payloads}:{line}: {found.group(2)}") from None
        print("\n".join(ref.id for ref in refs))
        return 0
    ref = client.dispatch(args.task, **options, **payload)
    print(ref.id)
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    try:
        grace = parse_duration(args.grace)
    except DurationError as exc:
        raise UsageError(f"--grace: {exc}") from None
    settings = load_settings()
    configure_logging(settings.log_format)
    project = project_of(settings)
    schedules = schedule_file(settings, project)
    entries = [*(schedules.schedules.values() if schedules else []), *periodiq_schedules(args.periodiq, project)]
    scheduler = Scheduler(open_client(settings, project), grace=grace)
    check_eviction_policy(scheduler.client.redis, "scheduler")
    done = scheduler.store.reconcile(entries)
    log.info(
        "%d entries from files and code (%d added, %d changed, %d removed, %d unchanged); grace %s",
        len(entries), len(done.added), len(done.changed), len(done.removed), len(done.unchanged), args.grace,
    )  # fmt: skip
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    scheduler.run(stop)
    log.info("stopped (%d enqueued)", scheduler.enqueued)
    return 0


def cmd_schedules(args: argparse.Namespace) -> int:
    infos = Schedules(open_client()).list()
    if not infos:
        print("no schedules in Redis (`jobkit scheduler` loads schedules.yaml; the API adds more)")
        return 0
    rows = [("ID", "SPEC", "TZ", "TASK", "QUEUE", "SOURCE", "NEXT RUN", "LAST RUN", "SKIPPED")]
    for info in infos:
        next_run = info.next_run_at.isoformat(timespec="seconds") if info.next_run_at else "-"
        last_run = info.last_run_at.isoformat(timespec="seconds") if info.last_run_at else "-"
        where = (info.task, info.queue or "-", info.source)
        rows.append((info.id, info.spec, info.timezone, *where, next_run, last_run, str(info.skipped)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


# -- parser ----------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobkit", description="Background jobs declared in YAML, run by Dramatiq.")
    parser.add_argument(
        "--project",
        metavar="DIR",
        help="the project folder (JOBKIT_PROJECT; default: the nearest folder upwards with a jobs.yaml)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="validate jobs.yaml and schedules.yaml; exit 0 ok, 1 config errors")
    check.add_argument(
        "--db", action="store_true", help="also have DATABASE_URL's database compile each declared export"
    )
    check.set_defaults(func=cmd_check)
    add_scaffold_commands(sub)
    add_process_commands(sub)

    scheduler = sub.add_parser("scheduler", help="run a scheduler (safe to run on every host: each fire happens once)")
    scheduler.add_argument(
        "--periodiq", action="append", default=[], metavar="MODULE", help="also schedule this module's periodiq actors"
    )
    scheduler.add_argument("--grace", default="60s", help="missed fires younger than this are enqueued once (60s)")
    scheduler.set_defaults(func=cmd_scheduler)
    sub.add_parser("schedules", help="list schedule entries with their next run times").set_defaults(func=cmd_schedules)

    dispatch = sub.add_parser("dispatch", help="enqueue one task (or one per line of --payloads) and print its id")
    dispatch.add_argument("task", help="task name, e.g. email:send")
    dispatch.add_argument("--payload", help="JSON object of keyword arguments")
    dispatch.add_argument(
        "--payloads", metavar="FILE.jsonl", help="one JSON object per line (- reads stdin): all checked, then queued"
    )
    when = dispatch.add_mutually_exclusive_group()
    when.add_argument("--delay", help="run after this long, e.g. 5m")
    when.add_argument("--at", help="run at this ISO time, e.g. 2026-01-31T09:00:00+00:00")
    dispatch.add_argument("--queue", help="queue instead of the task's own")
    dispatch.set_defaults(func=cmd_dispatch)
    add_commands(sub)
    return parser


def _stdout_gone() -> None:
    """The reader of stdout left (``jobkit stats --json | head``): send what is still buffered nowhere, so the
    interpreter's last flush does not fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # a stdout that is not a file (a test's capture)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _redis_address() -> str:
    try:
        return load_settings().effective_redis_url().split("@")[-1]
    except JobkitError:
        return "REDIS_URL"


def _split_dramatiq_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """``jobkit [--project DIR] worker FLAGS…``: everything after ``worker`` goes to Dramatiq untouched (argparse
    would take ``--processes 2`` for one of its own options and refuse it)."""
    at = 0
    while at < len(argv) and argv[at].startswith("-"):
        at += 2 if argv[at] == "--project" else 1
    if at < len(argv) and argv[at] == "worker":
        return argv[: at + 1], argv[at + 1 :]
    return argv, []


def main(argv: Sequence[str] | None = None) -> int:
    ours, dramatiq_flags = _split_dramatiq_flags(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(ours)
    if args.command == "worker":
        args.dramatiq_args = dramatiq_flags
    try:
        if args.command != "init" or args.project:  # `init` starts a project where it is run
            enter_project(args.project)
        code = int(args.func(args))
        sys.stdout.flush()  # here, where a reader that left is caught, not at exit
        return code
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except JobkitError as exc:
        print(f"jobkit: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        _stdout_gone()
        return 0  # the reader had what it wanted; that is not an error
    except (OSError, RedisError) as exc:
        # Redis down, socket missing: say so, never a traceback.
        print(
            f"jobkit: cannot reach Redis at {_redis_address()}: {exc} (is `jobkit up` running? is REDIS_URL right?)",
            file=sys.stderr,
        )
        return 1
