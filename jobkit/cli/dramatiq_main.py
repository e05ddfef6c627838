"""``python -m jobkit.cli.dramatiq_main ARGS`` is ``dramatiq ARGS`` with jobkit's log format: how ``jobkit worker``
and ``jobkit up`` start each worker child (``jobkit.actors --processes 1 --threads T …``).

In text mode (the default) it is Dramatiq's CLI unchanged. With ``JOBKIT_LOG_FORMAT=json`` the Dramatiq main process
logs JSON lines too (its boot and signal lines, a worker process that died): it configures the root logger and
passes ``--skip-logging`` so that Dramatiq's CLI does not add its text handler; the worker processes it forks then
adopt the JSON handler at boot (:func:`jobkit.config.logs.adopt_worker_logging`).

Dramatiq's log watcher thread stops as soon as the main process sets its stop event, which can leave the main
process's last lines unread in their pipe: on a busy machine "Worker with PID … exited unexpectedly (code -9)", the
one line that says why the child exits with code 1, was lost. Here the watcher writes what is left in its pipes
after Dramatiq's loop ends (nothing else changes).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Callable
from typing import Any

from jobkit.config.logs import configure_logging
from jobkit.config.settings import Settings
from jobkit.errors import SettingsError

__all__ = ["main"]

_VERBOSE = re.compile(r"-v+")


def _watch_logs_to_the_end(watch_logs: Callable[..., None]) -> Callable[..., None]:
    from dramatiq.compat import file_or_stderr

    def watch(log_filename: str | None, pipes: list[Any], stop: Any) -> None:
        watch_logs(log_filename, pipes, stop)
        with file_or_stderr(log_filename, mode="a", encoding="utf-8") as log_file:  # type: ignore[no-untyped-call]
            for pipe in pipes:
                with contextlib.suppress(EOFError, OSError):  # a closed pipe has nothing left
                    while not pipe.closed and pipe.poll():
                        log_file.write(pipe.recv_bytes().decode("utf-8", errors="replace"))
            log_file.flush()

    return watch


def main(argv: list[str]) -> int:
    import dramatiq.cli
    from dramatiq.cli import main as dramatiq_main  # the `dramatiq` console script's own entry point

    try:
        log_format = Settings.from_env().log_format
    except SettingsError as exc:
        print(f"jobkit: {exc}", file=sys.stderr)
        return 1
    if log_format == "json" and "--skip-logging" not in argv:
        verbose = sum(len(arg) - 1 for arg in argv if _VERBOSE.fullmatch(arg)) + argv.count("--verbose")
        configure_logging("json", level=logging.INFO if verbose == 0 else logging.DEBUG)  # Dramatiq's levels
        argv = [*argv, "--skip-logging"]
    sys.argv = ["dramatiq", *argv]
    dramatiq.cli.watch_logs = _watch_logs_to_the_end(dramatiq.cli.watch_logs)
    return int(dramatiq_main() or 0)  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
