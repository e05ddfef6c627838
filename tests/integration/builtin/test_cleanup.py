"""cleanup:old_files: only old regular files inside the roots go; symlinks are never followed, roots never deleted."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import dramatiq
import pytest

from jobkit.builtin.cleanup import clean_roots
from jobkit.engine.broker import JobkitBroker
from jobkit.services.client import Client
from tests.support import wait_for

DAY = 86_400.0


def touch(path: Path, age_days: float, size: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    stamp = time.time() - age_days * DAY
    os.utime(path, (stamp, stamp))
    return path


def old_symlink(link: Path, target: Path) -> Path:
    link.symlink_to(target)
    stamp = time.time() - 90 * DAY
    os.utime(link, (stamp, stamp), follow_symlinks=False)
    return link


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """var/{exports,mail} as roots, with old and new files, a nested dir, and symlinks pointing outside."""
    var, outside = tmp_path / "var", tmp_path / "outside"
    files = {
        "old": touch(var / "exports" / "old.csv", 40, size=100),
        "new": touch(var / "exports" / "new.csv", 1),
        "nested_old": touch(var / "exports" / "2024" / "deep" / "old.xlsx", 60, size=23),
        "nested_new": touch(var / "exports" / "2024" / "new.xlsx", 0),
        "old_mail": touch(var / "mail" / "a.eml", 31, size=7),
        "not_a_root": touch(var / "redis" / "appendonly.aof", 400),
        "victim": touch(outside / "victim.txt", 400),
        "victim_in_dir": touch(outside / "dir" / "old.txt", 400),
    }
    old_symlink(var / "exports" / "link_to_file", outside / "victim.txt")
    old_symlink(var / "exports" / "2024" / "link_to_dir", outside / "dir")
    for root in (var / "exports", var / "mail"):
        os.utime(root, (time.time() - 400 * DAY,) * 2)
    return files


def test_only_old_files_inside_the_roots_are_deleted(tree: dict[str, Path], tmp_path: Path) -> None:
    roots = [tmp_path / "var" / "exports", tmp_path / "var" / "mail", tmp_path / "var" / "reports"]

    report = clean_roots(roots, time.time() - 30 * DAY)

    gone = {name for name, path in tree.items() if not path.exists()}
    assert gone == {"old", "nested_old", "old_mail"}
    assert (report.deleted, report.bytes_freed, report.kept, report.skipped_symlinks) == (3, 130, 2, 2)
    assert (tmp_path / "var" / "exports" / "link_to_file").is_symlink()  # the link itself is left alone
    assert (tmp_path / "var" / "exports" / "2024" / "deep").is_dir()  # directories stay
    assert all(root.is_dir() for root in roots[:2])
    assert report.roots == [str(roots[0].resolve()), str(roots[1].resolve())]  # a missing root is skipped


def test_a_root_reached_through_a_symlink_is_cleaned_at_its_real_place(tree: dict[str, Path], tmp_path: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(tmp_path / "var" / "exports")

    report = clean_roots([alias], time.time() - 30 * DAY)

    assert report.deleted == 2
    assert tree["victim"].exists() and tree["victim_in_dir"].exists()


def test_the_task_dry_run_counts_without_deleting_then_the_real_run_deletes(
    client: Client, worker: dramatiq.Worker, tree: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    # Given the default roots (exports, reports and mail under the data dir) and the tree above
    caplog.set_level(logging.INFO, logger="jobkit.cleanup")

    # When a dry run goes through the worker, it reports what it would free and deletes nothing
    client.dispatch("cleanup:old_files", older_than="30d", dry_run=True)
    wait_for(lambda: "cleanup (dry run): 3 file(s) deleted, 130 bytes freed" in caplog.text, what="the dry run")
    assert all(path.exists() for path in tree.values())

    # And the real run deletes exactly the old files inside the roots
    client.dispatch("cleanup:old_files", older_than="30d")
    wait_for(lambda: "cleanup: 3 file(s) deleted, 130 bytes freed, 2 kept, 2 symlink(s)" in caplog.text, what="run")
    assert {name for name, path in tree.items() if not path.exists()} == {"old", "nested_old", "old_mail"}


def test_a_bad_duration_is_archived_after_one_attempt(
    client: Client, worker: dramatiq.Worker, broker: JobkitBroker
) -> None:
    client.dispatch("cleanup:old_files", older_than="30 days")

    dead = wait_for(lambda: broker.dead_letters("low"), what="the dead letter")
    assert dead[0].options["last_error"] == (
        "SkipRetry: older_than: expected a duration like 250ms, 30s, 5m, 1h30m or 1d, found '30 days'"
    )
