"""The operator commands of ``jobkit``: stats, pause, resume, tasks, task, retry, delete, token, api.

Each calls the same service layer as the REST API (``Queues``, ``mint_token``) and prints for a person (a rich
table) or, with ``--json``, for a script.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from jobkit.bootstrap import open_client
from jobkit.config.logs import configure_logging
from jobkit.config.settings import Settings
from jobkit.durations import parse_duration
from jobkit.errors import DurationError, UsageError
from jobkit.services.auth import ROLES, Revocations, load_secret, mint_token, token_id
from jobkit.services.queues import Queues

__all__ = ["add_commands"]


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

    stats = _queues().all_stats()
    if args.json:
        _print_json({"queues": [s.to_dict() for s in stats]})
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

    total, infos = _queues().tasks(args.queue, args.state, args.page, args.size)
    if args.json:
        _print_json({"queue": args.queue, "state": args.state, "total": total, "tasks": [i.to_dict() for i in infos]})
        return 0
    table = Table(title=f"{args.queue}: {total} {args.state} (page {args.page})", title_justify="left")
    for column in ("id", "task", "retried", "next run", "last error"):
        table.add_column(column, overflow="fold")
    for info in infos:
        retried = f"{info.retried}/{info.max_retries}"
        table.add_row(info.id, info.task, retried, info.next_process_at or "-", info.last_error or "")
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


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from jobkit.api import create_app  # Litestar is loaded only by the command that serves it

    settings = Settings.from_env()
    configure_logging(settings.log_format)  # uvicorn's own lines too: it is told not to set up logging itself
    host, port = args.host or settings.api_host, args.port or settings.api_port
    app = create_app(settings)
    logging.getLogger("jobkit.api").info("http://%s:%d (OpenAPI at /schema)", host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, log_config=None)
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
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("queue")
        command.add_argument("task_id")
        command.set_defaults(func=func)
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
