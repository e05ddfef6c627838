"""The operator commands of ``jobkit``: stats, pause, resume, tasks, task, retry, delete, cancel, archive, search,
token, api.

Each calls the same service layer as the REST API (``Queues``, ``mint_token``) and prints for a person (a rich
table) or, with ``--json``, for a script.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import resource
import sys
from typing import Any

from jobkit.bootstrap import open_client
from jobkit.config.logs import configure_logging
from jobkit.config.settings import Settings
from jobkit.durations import parse_duration
from jobkit.errors import DurationError, UsageError
from jobkit.services.auth import ROLES, Revocations, load_secret, mint_token, token_id
from jobkit.services.events import MAX_STREAMS
from jobkit.services.queues import STATES, Queues, TaskInfo
from jobkit.services.search import MAX_SIZE, Search
from jobkit.services.system import System

__all__ = ["add_commands", "connection_limits"]

#: Connections `jobkit api` keeps for requests other than event streams when every stream is open, and the file
#: descriptors it leaves for what is not a client connection (Redis connections, logs, the listening socket).
OTHER_REQUESTS = 100
RESERVED_FILES = 64


def _queues() -> Queues:
    return Queues(open_client())


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


def _print_table(table: Any) -> None:
    from rich.console import Console

    # A pipe or a log has no width to fit: keep every column whole there instead of Rich's 80-column default.
    console = Console(width=None if sys.stdout.isatty() else 160)
    try:
        console.print(table)
    except SystemExit:  # Rich's answer to a reader that left (`jobkit stats | head`); it has silenced stdout
        raise BrokenPipeError from None


def cmd_stats(args: argparse.Namespace) -> int:
    from rich.table import Table

    client = open_client()
    stats = Queues(client).all_stats()
    system = System(client)
    unserved = [t for t in system.task_types() if not t.served]
    memory = system.memory_or_none()
    if args.json:
        _print_json(
            {
                "queues": [s.to_dict() for s in stats],
                "memory": memory.to_dict() if memory else None,
                "unserved_tasks": [t.task for t in unserved],
            }
        )
        return 0
    table = Table(title="jobkit queues", title_justify="left")
    for column in ("queue", "state", "pending", "active", "scheduled", "retry", "archived", "completed", "latency"):
        table.add_column(column, justify="left" if column in ("queue", "state") else "right", no_wrap=True)
    table.add_column("today ok/failed", justify="right")
    for s in stats:
        state = "[yellow]paused[/yellow]" if s.paused else "[green]running[/green]"
        retry = f"[yellow]{s.retry}[/yellow]" if s.retry else "0"
        archived = f"[red]{s.archived}[/red]" if s.archived else "0"
        latency = f"{s.latency_ms / 1000:.1f}s" if s.latency_ms >= 1000 else f"{s.latency_ms}ms"
        table.add_row(
            s.queue, state, str(s.pending), str(s.active), str(s.scheduled), retry, archived, str(s.completed),
            latency, f"{s.processed - s.failed}/{s.failed}",
        )  # fmt: skip
    _print_table(table)
    if memory is not None:
        print(f"Redis memory: jobkit {memory.summary()}")
    if unserved:
        # A task type no live worker runs waits (retrying with a clear last_error) until one that knows it starts.
        names = ", ".join(f"{t.task} ({t.queue})" for t in unserved)
        print(f"no live worker serves: {names}; tasks of these types wait until a worker that knows them starts")
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    _queues().pause(args.queue)
    print(f"queue {args.queue} paused")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    _queues().resume(args.queue)
    print(f"queue {args.queue} resumed")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    total, infos = _queues().tasks(args.queue, args.state, args.page, args.size)
    if args.json:
        _print_json({"queue": args.queue, "state": args.state, "total": total, "tasks": [i.to_dict() for i in infos]})
        return 0
    table = Table(title=f"{args.queue}: {total} {args.state} (page {args.page})", title_justify="left")
    for column in ("id", "task", "retried", "next run", "last error"):
        table.add_column(column, overflow="fold")
    for info in infos:
        retried = f"{info.retried}/{info.max_retries}"
        # Values a payload or a handler wrote are shown as text, never read as Rich markup ("[/bold]" in an error).
        table.add_row(*map(Text, (info.id, info.task, retried, info.next_process_at or "-", info.last_error or "")))
    _print_table(table)
    return 0


def cmd_task(args: argparse.Namespace) -> int:
    _print_json(_queues().task(args.queue, args.task_id).to_dict())
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    state = _queues().retry(args.queue, args.task_id)
    print(f"task {args.task_id} ({state}) runs now")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    state = _queues().delete(args.queue, args.task_id)
    print(f"task {args.task_id} ({state}) deleted")
    return 0


def _who() -> str:
    """Who a command acts for, as kept on a canceled task: ``cli:<login name>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "cli"


def cmd_cancel(args: argparse.Namespace) -> int:
    state = _queues().cancel(args.queue, args.task_id, by=_who())
    if state == "active":
        print(f"task {args.task_id} (running) is being interrupted; it ends canceled within a second")
    else:
        print(f"task {args.task_id} ({state}) canceled")
    return 0


def cmd_archive(args: argparse.Namespace) -> int:
    state = _queues().archive(args.queue, args.task_id, by=_who())
    print(f"task {args.task_id} ({state}) archived")
    return 0


def _listed(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def cmd_search(args: argparse.Namespace) -> int:
    """``jobkit search TEXT [--queue Q] [--state S] [--task T] [--limit N]``: the first N matches, every queue and
    state unless told (the same search as ``GET /api/jobs/search``, its answers followed to the end or to N)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if args.limit < 1:
        raise UsageError(f"--limit: at least 1, found {args.limit}")
    search = Search(_queues())
    found: list[TaskInfo] = []
    cursor, scanned = None, 0
    while True:
        page = search.search(
            args.text, queues=_listed(args.queue), states=_listed(args.state), task=args.task, cursor=cursor,
            size=min(MAX_SIZE, args.limit - len(found)),
        )  # fmt: skip
        found.extend(page.tasks)
        cursor, scanned = page.cursor, scanned + page.scanned
        if cursor is None or len(found) >= args.limit:
            break
    if args.json:
        _print_json({"tasks": [info.to_dict() for info in found], "cursor": cursor})
        return 0
    more = f"; more with --limit {args.limit * 2}" if cursor else ""
    table = Table(
        title=f"{len(found)} task(s) matching {args.text!r} ({scanned} looked at{more})", title_justify="left"
    )
    for column in ("queue", "state", "id", "task", "payload", "last error"):
        table.add_column(column, overflow="fold")
    for info in found:
        payload = json.dumps(info.payload, ensure_ascii=False)
        fields = (info.queue, info.state, info.id, info.task, payload[:120], (info.last_error or "")[:120])
        table.add_row(*map(Text, fields))  # text, not Rich markup: a payload may hold "[/bold]"
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """``jobkit token --sub NAME --role ROLE [--ttl 1h]`` mints a token; ``jobkit token revoke ID`` revokes one."""
    settings = Settings.from_env()
    if args.action:
        if args.action[0] != "revoke" or len(args.action) != 2:
            raise UsageError(f"expected `jobkit token revoke ID`, found `jobkit token {' '.join(args.action)}`")
        client = open_client(settings)
        Revocations(client.redis, client.keys).revoke(args.action[1])
        print(f"token {args.action[1]} revoked (refused by every API process within a second)")
        return 0
    if not args.sub or not args.role:
        raise UsageError("--sub and --role are needed to mint a token (or: jobkit token revoke ID)")
    try:
        ttl = parse_duration(args.ttl)
    except DurationError as exc:
        raise UsageError(f"--ttl: {exc}") from None
    secret = load_secret(settings)
    if secret is None:
        raise UsageError(
            f"no secret to sign with in {settings.data_dir.resolve()}: set JOBKIT_SECRET, run `jobkit up` once (it "
            "creates one), or run this in the project's folder (or name it: --project DIR)"
        )
    token = mint_token(secret, args.sub, args.role, ttl, settings.token_max_ttl)
    print(token)
    print(
        f"jobkit: token id {token_id(token)} (revoke it with `jobkit token revoke {token_id(token)}`)", file=sys.stderr
    )
    return 0


def connection_limits(open_files: int) -> tuple[int, int]:
    """(uvicorn's ``limit_concurrency``, the most event streams) for a process that may open ``open_files`` files:
    every client connection is a descriptor, so both stay under the limit, and the streams (which last) always leave
    room for the other requests (which are short), so /health still answers with every stream open."""
    if open_files < 0:  # RLIM_INFINITY
        open_files = MAX_STREAMS + OTHER_REQUESTS + RESERVED_FILES
    connections = min(MAX_STREAMS + OTHER_REQUESTS, max(32, open_files - RESERVED_FILES))
    streams = min(MAX_STREAMS, connections - min(OTHER_REQUESTS, connections // 2))
    return connections, streams


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from jobkit.api import create_app  # Litestar is loaded only by the command that serves it

    settings = Settings.from_env()
    configure_logging(settings.log_format)  # uvicorn's own lines too: it is told not to set up logging itself
    host, port = args.host or settings.api_host, args.port or settings.api_port
    app = create_app(settings)
    events = app.state.services.events
    connections, events.max_streams = connection_limits(resource.getrlimit(resource.RLIMIT_NOFILE)[0])

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # Open event streams end at once (with an `end` event): a graceful shutdown waits for open responses.
            events.disconnect_all()
            super().handle_exit(sig, frame)

    logging.getLogger("jobkit.api").info("http://%s:%d (OpenAPI at /schema)", host, port)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, log_config=None,
        limit_concurrency=connections,  # beyond it uvicorn answers 503 at once instead of running out of descriptors
    )  # fmt: skip
    Server(config).run()
    return 0


def add_commands(sub: Any) -> None:
    stats = sub.add_parser("stats", help="the queue table")
    stats.add_argument("--json", action="store_true", help="print JSON (the API's /api/jobs/stats answer)")
    stats.set_defaults(func=cmd_stats)
    for name, func, text in (("pause", cmd_pause, "pause a queue"), ("resume", cmd_resume, "resume a queue")):
        command = sub.add_parser(name, help=text)
        command.add_argument("queue")
        command.set_defaults(func=func)
    tasks = sub.add_parser("tasks", help="list a queue's tasks in one state")
    tasks.add_argument("queue")
    tasks.add_argument(
        "--state", default="pending", choices=("pending", "active", "scheduled", "retry", "archived", "completed")
    )
    tasks.add_argument("--page", type=int, default=1)
    tasks.add_argument("--size", type=int, default=20)
    tasks.add_argument("--json", action="store_true")
    tasks.set_defaults(func=cmd_tasks)
    for name, func, text in (
        ("task", cmd_task, "one task as JSON"),
        ("retry", cmd_retry, "run a scheduled, retry or archived task now"),
        ("delete", cmd_delete, "delete a task that is not running"),
        ("cancel", cmd_cancel, "cancel a task (a running one is interrupted within a second)"),
        ("archive", cmd_archive, "archive a pending, scheduled or retry task"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("queue")
        command.add_argument("task_id")
        command.set_defaults(func=func)
    search = sub.add_parser("search", help="find tasks by id prefix, task type, payload or error text")
    search.add_argument("text", help="the text (case-insensitive; sensitive fields never match)")
    search.add_argument("--queue", action="append", help="only this queue (repeat, or a,b; default: every queue)")
    search.add_argument(
        "--state", action="append", help=f"only this state (repeat, or a,b; {', '.join(STATES)}; default: all)"
    )
    search.add_argument("--task", help="only tasks of this type")
    search.add_argument("--limit", type=int, default=50, help="print at most this many (50)")
    search.add_argument("--json", action="store_true", help="print the API's answer shape")
    search.set_defaults(func=cmd_search)
    token = sub.add_parser("token", help="mint an API bearer token, or `jobkit token revoke ID`")
    token.add_argument("action", nargs="*", metavar="revoke ID", help="revoke the token with this id")
    token.add_argument("--sub", help="who holds the token")
    token.add_argument("--role", choices=ROLES, help="admin (everything), viewer (reads), user (triggers)")
    token.add_argument("--ttl", default="1h", help="how long it is valid (1h; at most JOBKIT_TOKEN_MAX_TTL, 30d)")
    token.set_defaults(func=cmd_token)
    api = sub.add_parser("api", help="serve the REST API and dashboard (127.0.0.1:8000 by default)")
    api.add_argument("--host", help="JOBKIT_API_HOST (127.0.0.1)")
    api.add_argument("--port", type=int, help="JOBKIT_API_PORT (8000)")
    api.set_defaults(func=cmd_api)
