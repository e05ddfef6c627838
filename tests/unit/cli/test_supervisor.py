"""The supervisor's rules, on tiny children: back-off that doubles up to its ceiling, exit causes in words, and what
the reloader watches (no Redis, no Dramatiq)."""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path

import pytest

from jobkit.cli.reload import watch_set
from jobkit.cli.supervisor import Part, Supervisor, dramatiq_exit_cause, exit_cause, spawn
from jobkit.config.settings import Settings
from jobkit.errors import UsageError
from tests.support import wait_for


def catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (SigCgt in /proc/PID/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
    return bool(mask & (1 << (signum - 1)))


def test_exit_causes_say_how_a_child_ended() -> None:
    assert exit_cause(-signal.SIGKILL) == "killed by SIGKILL"
    assert exit_cause(3) == "exited with code 3"
    assert dramatiq_exit_cause(3) == "exited with code 3: it could not connect to Redis"
    assert dramatiq_exit_cause(1).startswith("exited with code 1: its Dramatiq worker process died or was killed")
    assert dramatiq_exit_cause(9) == "exited with code 9"


def test_a_child_that_keeps_dying_is_restarted_with_a_back_off_that_doubles_up_to_its_ceiling(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="jobkit.supervisor")
    supervisor = Supervisor(backoff=(0.05, 0.2), stable_after=60)
    supervisor.add(Part("crasher", "workers", lambda: spawn([sys.executable, "-c", "raise SystemExit(3)"], {})))
    deadline = time.monotonic() + 30
    while len([r for r in caplog.records if "restarting in" in r.getMessage()]) < 5:
        supervisor.step()
        time.sleep(0.01)
        assert time.monotonic() < deadline

    deaths = [r.getMessage() for r in caplog.records if "restarting in" in r.getMessage()]
    assert [line.rpartition("restarting in ")[2] for line in deaths[:5]] == ["50ms", "100ms", "200ms", "200ms", "200ms"]
    assert all("crasher (pid " in line and ") exited with code 3 after " in line for line in deaths)
    assert sum("crasher restarted (pid " in r.getMessage() for r in caplog.records) >= 4

    supervisor.signals = 1
    assert supervisor.run() == 0  # nothing was running when it stopped


def test_stopping_sends_one_sigterm_and_reports_a_child_that_did_not_end_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    code = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(7)); time.sleep(30)"
    supervisor = Supervisor()
    part = supervisor.add(Part("stubborn", "api", lambda: spawn([sys.executable, "-c", code], {})))
    child = part.process
    assert child is not None
    wait_for(lambda: catches(child.pid, signal.SIGTERM), what="its SIGTERM handler")
    supervisor.signals = 1

    assert supervisor.run() == 1
    assert part.process is None
    assert any("stubborn (pid" in r.getMessage() and "exited with code 7" in r.getMessage() for r in caplog.records)


def test_the_reloader_watches_the_two_files_and_the_handler_packages_of_the_app_only(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "single.py").write_text("def run() -> None: ...\n")
    (tmp_path / "jobs.yaml").write_text(
        "tasks:\n"
        "  a:b: {handler: app.video:process}\n"
        "  c:d: {handler: 'single:run'}\n"
        "  e:f: {handler: jobkit.builtin.email:send_email}\n"
        "  g:h: {handler: yaml:safe_load}\n"
    )
    settings = Settings(jobs_path=tmp_path / "jobs.yaml", schedules_path=tmp_path / "schedules.yaml")

    watched = watch_set(settings)

    root = str(tmp_path.resolve())
    assert watched.packages == {f"{root}/app"} and watched.modules == {f"{root}/single.py"}
    assert watched.flat_folders == {root}
    assert watched.kind(f"{root}/jobs.yaml") == "jobs" and watched.kind(f"{root}/schedules.yaml") == "schedules"
    assert watched.kind(f"{root}/app/sub/video.py") == "code" and watched.kind(f"{root}/single.py") == "code"
    assert watched.kind(f"{root}/app/notes.txt") is None and watched.kind(f"{root}/var/redis/appendonly.aof") is None


def test_jobkit_worker_takes_processes_and_threads_and_passes_every_other_flag_to_each_dramatiq() -> None:
    from jobkit.cli.main import _split_dramatiq_flags
    from jobkit.cli.processes import _worker_flags
    from jobkit.config.jobs_file import load_project

    project = load_project(Path(__file__).resolve().parents[3] / "jobs.yaml")
    argv = ["--project", "app", "worker", "--processes", "3", "-t2", "--queues", "low", "default", "-v"]

    ours, flags = _split_dramatiq_flags(argv)

    assert (ours, flags) == (["--project", "app", "worker"], argv[3:])
    assert _worker_flags(project, flags) == (3, 2, ["low", "default"], ["--queues", "low", "default", "-v"])
    assert _worker_flags(project, [])[:3] == (2, 8, ["critical", "default", "low"])  # jobs.yaml's worker: section
    with pytest.raises(UsageError, match="--processes 0: expected a whole number of at least 1"):
        _worker_flags(project, ["-p", "0"])
    with pytest.raises(UsageError, match="jobkit worker does not take --pid-file: each child would claim"):
        _worker_flags(project, ["--pid-file=w.pid"])
