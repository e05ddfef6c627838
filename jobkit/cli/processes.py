"""``jobkit worker`` and ``jobkit up``: the long-running commands, each a :class:`~jobkit.cli.supervisor.Supervisor`.

``jobkit worker`` runs ``worker.processes`` children, each Dramatiq's CLI with one worker process
(``dramatiq jobkit.actors --processes 1 --threads T``), and replaces one that dies while the others keep working.
``jobkit up`` adds the embedded Redis (when no Redis is configured), one scheduler and the API, restarts any of them
that dies, and with ``--reload`` restarts what a changed file concerns once ``jobkit check`` passes.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import timedelta

from jobkit.builtin.exports import ensure_demo_database
from jobkit.cli.project import load_settings, project_of, schedule_file
from jobkit.cli.supervisor import Part, Supervisor, dramatiq_exit_cause, spawn
from jobkit.config.logs import configure_logging
from jobkit.config.model import Project
from jobkit.config.settings import Settings
from jobkit.errors import UsageError
from jobkit.services.auth import ensure_secret, mint_token
from jobkit.store.embedded import EmbeddedRedis
from jobkit.store.files import private_directory

__all__ = ["add_process_commands", "cmd_up", "cmd_worker", "worker_child_argv"]

log = logging.getLogger("jobkit.supervisor")

#: The supervisor's own lines, in text mode: the `jobkit: …` lines of the README.
SUPERVISOR_TEXT = "jobkit: %(message)s"
#: Dramatiq flags that make no sense for one child among several.
_REFUSED = {
    "--pid-file": "each child would claim the same file; supervise `jobkit worker` itself, or run "
    "`dramatiq jobkit.actors --pid-file …` for Dramatiq's own process model",
    "--watch": "use `jobkit up --reload`, or `dramatiq jobkit.actors --watch …`",
}


WORKER_HELP = """\
usage: jobkit worker [--processes N] [--threads T] [DRAMATIQ FLAGS ...]

Runs N supervised workers (worker.processes in jobs.yaml), each Dramatiq's CLI with one process of T threads
(worker.threads): a worker that dies is replaced while the others keep working. Every other flag goes to each
worker's `dramatiq jobkit.actors` (--queues, --path, --verbose …; not --pid-file or --watch). Dramatiq's own help:
"""


def worker_child_argv(project: Project, threads: int, extra: Sequence[str]) -> list[str]:
    """One supervised worker: Dramatiq's CLI with one worker process, through jobkit's log-format shim."""
    shutdown_ms = int(project.worker.shutdown_timeout.total_seconds() * 1000)
    return [
        sys.executable, "-m", "jobkit.cli.dramatiq_main", "jobkit.actors",
        "--processes", "1",
        "--threads", str(threads),
        "--worker-shutdown-timeout", str(max(shutdown_ms, 100)),
        *extra,
    ]  # fmt: skip


def _worker_flags(project: Project, extra: Sequence[str]) -> tuple[int, int, list[str], list[str]]:
    """``--processes`` and ``--threads`` (the supervisor's), the queues named, and the flags each child gets."""
    parser = argparse.ArgumentParser(prog="jobkit worker", add_help=False, allow_abbrev=False)
    parser.add_argument("--processes", "-p", type=int, default=project.worker.processes)
    parser.add_argument("--threads", "-t", type=int, default=project.worker.threads)
    known, rest = parser.parse_known_args(list(extra))
    for name, value in (("--processes", known.processes), ("--threads", known.threads)):
        if value < 1:
            raise UsageError(f"{name} {value}: expected a whole number of at least 1")
    for flag in rest:
        refused = _REFUSED.get(flag.partition("=")[0])
        if refused:
            raise UsageError(f"jobkit worker does not take {flag.partition('=')[0]}: {refused}")
    queues = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    queues.add_argument("--queues", "-Q", nargs="+", default=project.queue_names())
    return known.processes, known.threads, queues.parse_known_args(rest)[0].queues, rest


def _worker_parts(
    supervisor: Supervisor, project: Project, count: int, threads: int, extra: Sequence[str], env: Mapping[str, str]
) -> None:
    argv = worker_child_argv(project, threads, extra)
    for n in range(1, count + 1):
        supervisor.add(
            Part(f"worker {n}", "workers", lambda: spawn(argv, env), cause=dramatiq_exit_cause, overlap=True)
        )


def cmd_worker(args: argparse.Namespace) -> int:
    if {"-h", "--help"} & set(args.dramatiq_args):
        print(WORKER_HELP, flush=True)
        return subprocess.run([sys.executable, "-m", "dramatiq", "--help"], check=False).returncode
    settings = load_settings()
    configure_logging(settings.log_format, text_format=SUPERVISOR_TEXT)
    project = project_of(settings)  # refuse a broken file once, here, with the same text the workers would print
    count, threads, queues, extra = _worker_flags(project, args.dramatiq_args)
    supervisor = Supervisor()
    supervisor.handle_signals()
    supervisor.adopt_orphans()
    _worker_parts(supervisor, project, count, threads, extra, os.environ)
    log.info("%d worker process(es) x %d threads on queues %s", count, threads, ", ".join(queues))
    return supervisor.run()


def _api_argv() -> list[str]:
    return [sys.executable, "-m", "jobkit.cli", "api"]


def _scheduler_argv() -> list[str]:
    return [sys.executable, "-m", "jobkit.cli", "scheduler"]


def _dashboard(settings: Settings) -> str:
    """The dashboard link; in text mode with a short-lived admin token in the fragment (never sent to a server).
    JSON lines go to log shippers, where a token does not belong."""
    base = f"http://{settings.api_host}:{settings.api_port}/dashboard"
    secret = ensure_secret(settings)  # the API signs with it: create it before the API starts
    if settings.log_format == "json":
        return f"{base} (log in with a token from `jobkit token --sub you --role admin`)"
    token = mint_token(secret, "jobkit-up", "admin", timedelta(hours=1))
    return f"{base}#token={token} (token valid 1h; `jobkit token` mints more)"


def cmd_up(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings.log_format, text_format=SUPERVISOR_TEXT)
    project = project_of(settings)
    schedule_file(settings, project)  # refuse a broken schedules.yaml here, before anything starts
    private_directory(settings.data_dir)  # the embedded Redis's AOF, mails, exports and the secret live in it
    env = dict(os.environ)
    env.setdefault("JOBKIT_LOG_SUCCESS", "1")  # on a laptop, every finished task shows in the terminal
    supervisor = Supervisor()
    supervisor.handle_signals()
    supervisor.adopt_orphans()
    try:
        if settings.embedded:
            redis_server = EmbeddedRedis(settings.data_dir.resolve() / "redis", socket=settings.embedded_socket)

            def start_redis() -> subprocess.Popen[bytes]:
                process = redis_server.start().process
                assert process is not None
                return process

            supervisor.add(Part("Redis", "redis", start_redis, last=True), required=True)
            env["REDIS_URL"] = redis_server.url
            log.info("embedded Redis on %s (data in %s)", redis_server.url, redis_server.directory)
        else:
            log.info("using Redis at %s", settings.effective_redis_url().split("@")[-1])
        workers = project.worker
        _worker_parts(supervisor, project, workers.processes, workers.threads, [], env)
        log.info(
            "%d worker process(es) x %d threads on queues %s",
            workers.processes, workers.threads, ", ".join(project.queue_names()),
        )  # fmt: skip
        demo = ensure_demo_database(settings)  # so the seed's export example works out of the box
        if demo is not None:
            log.info("demo database for exports at %s", demo)
        supervisor.add(Part("scheduler", "scheduler", lambda: spawn(_scheduler_argv(), env)))
        log.info("scheduler started")
        dashboard = _dashboard(settings)
        supervisor.add(Part("API", "api", lambda: spawn(_api_argv(), env)))
        log.info("API on http://%s:%d (OpenAPI at /schema)", settings.api_host, settings.api_port)
        log.info("dashboard %s", dashboard)
        if args.reload:
            from jobkit.cli.reload import Reloader

            Reloader(settings, env, supervisor).start()
            log.info("--reload: watching jobs.yaml, schedules.yaml and the handler modules")
    except BaseException:
        supervisor.signals = max(supervisor.signals, 1)  # stop what was started, then report the error
        supervisor.run()
        raise
    return supervisor.run()


def add_process_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    up = sub.add_parser(
        "up", help="everything in one, supervised: embedded Redis (unless REDIS_URL), workers, scheduler, API"
    )
    up.add_argument(
        "--reload",
        action="store_true",
        help="restart workers (and the scheduler, the API) when jobs.yaml, schedules.yaml or a handler changes "
        "and `jobkit check` passes",
    )
    up.set_defaults(func=cmd_up)
    worker = sub.add_parser(
        "worker",
        help="run worker.processes supervised Dramatiq workers (a dead one is replaced); other flags go to dramatiq",
    )
    worker.add_argument("dramatiq_args", nargs=argparse.REMAINDER, help="extra flags passed to dramatiq")
    worker.set_defaults(func=cmd_worker)
