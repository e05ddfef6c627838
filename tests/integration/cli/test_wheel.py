"""Starting inside an existing app: jobkit built as a wheel and installed into a fresh venv, then, in an empty folder,
`jobkit init`, `jobkit new video:process --queue low`, `jobkit check`, `jobkit up`, and the new task's stub runs.

The fresh venv gets jobkit from the wheel only; its dependencies come from this test run's own environment (a
path in a .pth file, without that environment's editable jobkit), so nothing is downloaded but the wheel's build
backend, which pip caches."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.support import ROOT, free_port, start, wait_for

pytestmark = pytest.mark.slow


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.timeout(300)  # a wheel build and a venv, then `jobkit up` with its embedded Redis
def test_from_a_wheel_in_a_fresh_venv_init_new_check_up_and_dispatch_run_the_stub(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    # Given jobkit's wheel installed into a fresh venv
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
                tmp_path, dict(os.environ), timeout=240)  # fmt: skip
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("jobkit-*.whl")
    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, dict(os.environ)).returncode == 0
    python = venv / "bin" / "python"
    site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, {})
    Path(site.stdout.strip(), "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        tmp_path, dict(os.environ),
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    app = tmp_path / "app"
    app.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "JOBKIT_API_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    }  # fmt: skip
    where = run([str(python), "-c", "import jobkit; print(jobkit.__file__)"], app, env)
    assert where.stdout.startswith(str(venv)), where  # the wheel's jobkit, not this checkout's
    jobkit = str(venv / "bin" / "jobkit")

    # When, in an empty folder, the check runs first: it says only that there is no jobs.yaml
    check = run([jobkit, "check"], app, env)
    assert (check.returncode, check.stdout) == (1, "")
    assert check.stderr.startswith("jobs.yaml: file not found (run `jobkit init`") and check.stderr.count("\n") == 1

    # And then init, new and check
    assert run([jobkit, "init"], app, env).returncode == 0
    new = run([jobkit, "new", "video:process", "--queue", "low"], app, env)
    assert new.returncode == 0, new.stderr
    check = run([jobkit, "check"], app, env)
    assert check.returncode == 0, check.stderr
    assert "jobs.yaml: ok (3 queues, 10 tasks)" in check.stdout

    # Then `jobkit up` runs it all, and a dispatched video:process runs the stub
    log = tmp_path / "up.log"
    up = start(processes, [jobkit, "up"], env, app, log)
    wait_for(lambda: log.read_text().count("Worker process is ready") == 2, timeout=90, what="two workers")
    dispatched = run([jobkit, "dispatch", "video:process", "--payload", '{"video_id": 7}'], app, env)
    assert dispatched.returncode == 0, dispatched.stderr
    task_id = dispatched.stdout.strip()
    wait_for(lambda: f"video:process {task_id} done in " in log.read_text(), timeout=30, what="the stub's run")
    assert "video:process ran with {'video_id': 7}" in log.read_text()

    up.send_signal(signal.SIGINT)
    assert up.wait(40) == 0
