"""The ``jobkit`` command. Exit codes: 0 ok, 1 a user error (message on stderr), 2 bad usage."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from redis.exceptions import RedisError

from jobkit.bootstrap import open_client
from jobkit.builtin.database import check_exports
from jobkit.builtin.exports import ensure_demo_database
from jobkit.cli.ops import add_commands
from jobkit.config.jobs_file import load_project
from jobkit.config.model import Project, ScheduleFile
from jobkit.config.schedules_file import load_schedules
from jobkit.config.settings import Settings
from jobkit.durations import parse_duration
from jobkit.errors import ConfigError, DurationError, JobkitError, Problem, UsageError
from jobkit.scheduling.dynamic import Schedules
from jobkit.scheduling.fire_loop import Scheduler
from jobkit.scheduling.periodiq import periodiq_schedules
from jobkit.services.auth import ensure_secret, mint_token
from jobkit.store.embedded import EmbeddedRedis

__all__ = ["main"]


def _settings() -> Settings:
    return Settings.from_env()


def _project(settings: Settings) -> Project:
    return load_project(settings.jobs_path)


# -- commands --------------------------------------------------------------------------------------------------------
def _schedule_file(settings: Settings, project: Project | None) -> ScheduleFile | None:
    """schedules.yaml checked against ``project``; None when the file does not exist (nothing is scheduled)."""
    if not settings.schedules_path.exists():
        return None
    return load_schedules(settings.schedules_path, project)


def cmd_check(args: argparse.Namespace) -> int:
    settings = _settings()
    problems: list[Problem] = []
    project: Project | None = None
    try:
        project = _project(settings)
    except ConfigError as exc:
        problems.extend(exc.problems)
    try:  # without a project (jobs.yaml broken) the schedules are still checked, minus tasks, queues and payloads
        schedules = _schedule_file(settings, project)
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


def _worker_argv(project: Project, extra: Sequence[str]) -> list[str]:
    shutdown_ms = int(project.worker.shutdown_timeout.total_seconds() * 1000)
    return [
        sys.executable, "-m", "dramatiq", "jobkit.actors",
        "--processes", str(project.worker.processes),
        "--threads", str(project.worker.threads),
        "--worker-shutdown-timeout", str(max(shutdown_ms, 100)),
        *extra,
    ]  # fmt: skip


def cmd_worker(args: argparse.Namespace) -> int:
    project = _project(_settings())  # refuse a broken file once, here, with the same text the workers would print
    argv = _worker_argv(project, args.dramatiq_args)
    os.execv(argv[0], argv)
    return 0  # pragma: no cover - execv does not return


def cmd_dispatch(args: argparse.Namespace) -> int:
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
    ref = client.dispatch(args.task, **options, **payload)
    print(ref.id)
    return 0


def cmd_up(args: argparse.Namespace) -> int:

    settings = _settings()
    project = _project(settings)
    env = dict(os.environ)
    env.setdefault("JOBKIT_LOG_SUCCESS", "1")  # on a laptop, every finished task shows in the terminal
    redis_server: EmbeddedRedis | None = None
    if settings.embedded:
        redis_server = EmbeddedRedis(settings.data_dir.resolve() / "redis", socket=settings.embedded_socket)
        redis_server.start()
        env["REDIS_URL"] = redis_server.url
        print(f"jobkit: embedded Redis on {redis_server.url} (data in {redis_server.directory})", flush=True)
    else:
        print(f"jobkit: using Redis at {settings.effective_redis_url().split('@')[-1]}", flush=True)

    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        if stopping:  # a second signal: hard stop (workers hand their tasks back to Redis on the way out)
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            return
        stopping = True
        print("jobkit: stopping (waiting for running tasks; press Ctrl-C again to stop at once)", flush=True)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        # Own sessions: Ctrl-C reaches jobkit up alone, which then sends each child exactly one SIGTERM.
        children.append(subprocess.Popen(_worker_argv(project, []), env=env, start_new_session=True))
        print(
            f"jobkit: {project.worker.processes} worker process(es) x {project.worker.threads} threads "
            f"on queues {', '.join(project.queue_names())}",
            flush=True,
        )
        _schedule_file(settings, project)  # refuse a broken schedules.yaml here, before the scheduler starts
        demo = ensure_demo_database(settings)  # so the seed's export example works out of the box
        if demo is not None:
            print(f"jobkit: demo database for exports at {demo}", flush=True)
        children.append(subprocess.Popen(_scheduler_argv(), env=env, start_new_session=True))
        print("jobkit: scheduler started", flush=True)
        dashboard = _dashboard_url(settings)  # creates the secret first, when there is none yet
        children.append(subprocess.Popen(_api_argv(), env=env, start_new_session=True))
        print(f"jobkit: API on http://{settings.api_host}:{settings.api_port} (OpenAPI at /schema)", flush=True)
        print(f"jobkit: dashboard {dashboard} (token valid 1h; `jobkit token` mints more)", flush=True)
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
        if not stopping:
            print("jobkit: a child process exited unexpectedly; stopping the rest", file=sys.stderr, flush=True)
            stop(signal.SIGTERM, None)
        for child in children:
            child.wait()
    finally:
        if redis_server is not None:
            redis_server.stop()
    # uvicorn re-raises the SIGTERM it handled, so a child that ended on the signal we sent ended cleanly too.
    clean = (0, None, -signal.SIGTERM)
    failed = [child for child in children if child.returncode not in clean]
    for child in failed:
        command = " ".join(str(part) for part in cast(list[str], child.args)[1:4])
        print(f"jobkit: {command} exited with code {child.returncode}", file=sys.stderr)
    return 1 if failed else 0


def _api_argv() -> list[str]:
    return [sys.executable, "-m", "jobkit.cli", "api"]


def _dashboard_url(settings: Settings) -> str:
    """The dashboard with a short-lived admin token in the fragment (never sent to a server, never logged)."""
    token = mint_token(ensure_secret(settings), "jobkit-up", "admin", timedelta(hours=1))
    return f"http://{settings.api_host}:{settings.api_port}/dashboard#token={token}"


def _scheduler_argv() -> list[str]:
    return [sys.executable, "-m", "jobkit.cli", "scheduler"]


def cmd_scheduler(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        grace = parse_duration(args.grace)
    except DurationError as exc:
        raise UsageError(f"--grace: {exc}") from None
    settings = _settings()
    project = _project(settings)
    schedules = _schedule_file(settings, project)
    entries = [*(schedules.schedules.values() if schedules else []), *periodiq_schedules(args.periodiq, project)]
    scheduler = Scheduler(open_client(settings, project), grace=grace)
    done = scheduler.store.reconcile(entries)
    print(
        f"jobkit scheduler: {len(entries)} entries from files and code "
        f"({len(done.added)} added, {len(done.changed)} changed, {len(done.removed)} removed, "
        f"{len(done.unchanged)} unchanged); grace {args.grace}",
        flush=True,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    scheduler.run(stop)
    print(f"jobkit scheduler: stopped ({scheduler.enqueued} enqueued)", flush=True)
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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="validate jobs.yaml and schedules.yaml; exit 0 ok, 1 config errors")
    check.add_argument(
        "--db", action="store_true", help="also have DATABASE_URL's database compile each declared export"
    )
    check.set_defaults(func=cmd_check)
    sub.add_parser("up", help="everything in one: embedded Redis (unless REDIS_URL), workers, scheduler").set_defaults(
        func=cmd_up
    )

    scheduler = sub.add_parser("scheduler", help="run a scheduler (safe to run on every host: each fire happens once)")
    scheduler.add_argument(
        "--periodiq", action="append", default=[], metavar="MODULE", help="also schedule this module's periodiq actors"
    )
    scheduler.add_argument("--grace", default="60s", help="missed fires younger than this are enqueued once (60s)")
    scheduler.set_defaults(func=cmd_scheduler)
    sub.add_parser("schedules", help="list schedule entries with their next run times").set_defaults(func=cmd_schedules)

    worker = sub.add_parser("worker", help="run the workers (dramatiq jobkit.actors with jobs.yaml's worker settings)")
    worker.add_argument("dramatiq_args", nargs=argparse.REMAINDER, help="extra flags passed to dramatiq")
    worker.set_defaults(func=cmd_worker)

    dispatch = sub.add_parser("dispatch", help="enqueue one task and print its id")
    dispatch.add_argument("task", help="task name, e.g. email:send")
    dispatch.add_argument("--payload", help="JSON object of keyword arguments")
    when = dispatch.add_mutually_exclusive_group()
    when.add_argument("--delay", help="run after this long, e.g. 5m")
    when.add_argument("--at", help="run at this ISO time, e.g. 2026-01-31T09:00:00+00:00")
    dispatch.add_argument("--queue", help="queue instead of the task's own")
    dispatch.set_defaults(func=cmd_dispatch)
    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except JobkitError as exc:
        print(f"jobkit: {exc}", file=sys.stderr)
        return 1
    except (OSError, RedisError) as exc:
        # Redis down, socket missing: say so, never a traceback.
        where = _settings().effective_redis_url().split("@")[-1]
        print(
            f"jobkit: cannot reach Redis at {where}: {exc} (is `jobkit up` running? is REDIS_URL right?)",
            file=sys.stderr,
        )
        return 1
