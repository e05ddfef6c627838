"""cleanup:old_files: delete files older than ``older_than`` under the configured roots (``JOBKIT_CLEANUP_ROOTS``;
by default exports, reports and mail under the data dir).

Only regular files go. Symlinks are never followed nor deleted, so nothing outside a root is touched; directories,
the roots included, are kept. The walk holds each directory open (``os.fwalk``), so a directory swapped for a symlink
mid-walk cannot lead it elsewhere.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from jobkit.durations import parse_duration
from jobkit.errors import DurationError, SkipRetry
from jobkit.services.client import Client, needs_client

__all__ = ["CleanupReport", "clean_roots", "cleanup_old_files"]

log = logging.getLogger("jobkit.cleanup")


@dataclass
class CleanupReport:
    deleted: int = 0
    bytes_freed: int = 0
    kept: int = 0
    skipped_symlinks: int = 0
    errors: int = 0
    dry_run: bool = False
    roots: list[str] = field(default_factory=list)


@needs_client()
def cleanup_old_files(client: Client, older_than: str = "30d", dry_run: bool = False) -> None:
    """Delete (or with ``dry_run``, count) files last modified more than ``older_than`` ago."""
    try:
        age = parse_duration(older_than)
    except DurationError as exc:
        raise SkipRetry(f"older_than: {exc}") from None
    if age.total_seconds() <= 0:
        raise SkipRetry(f"older_than: must be more than zero, found {older_than!r}")
    if not isinstance(dry_run, bool):
        raise SkipRetry(f"dry_run: expected true or false, found {dry_run!r}")
    report = clean_roots(client.settings.cleanup_dirs, time.time() - age.total_seconds(), dry_run=dry_run)
    log.info(
        "cleanup%s: %d file(s) deleted, %d bytes freed, %d kept, %d symlink(s) skipped, %d error(s)",
        " (dry run)" if dry_run else "",
        report.deleted,
        report.bytes_freed,
        report.kept,
        report.skipped_symlinks,
        report.errors,
    )


def clean_roots(roots: tuple[Path, ...] | list[Path], cutoff: float, *, dry_run: bool = False) -> CleanupReport:
    """Delete regular files with a modification time before ``cutoff`` (epoch seconds) under each root."""
    report = CleanupReport(dry_run=dry_run)
    for root in roots:
        resolved = Path(os.path.realpath(root))
        if not resolved.is_dir():
            continue
        report.roots.append(str(resolved))
        for _, dirnames, filenames, dir_fd in os.fwalk(resolved, follow_symlinks=False):
            for name in filenames + [d for d in dirnames if _is_link(name=d, dir_fd=dir_fd)]:
                _consider(name, dir_fd, cutoff, dry_run, report)
    return report


def _is_link(*, name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _consider(name: str, dir_fd: int, cutoff: float, dry_run: bool, report: CleanupReport) -> None:
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        report.skipped_symlinks += 1
        return
    if not stat.S_ISREG(info.st_mode) or info.st_mtime >= cutoff:
        report.kept += stat.S_ISREG(info.st_mode)
        return
    try:
        if not dry_run:
            os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    except OSError as exc:
        report.errors += 1
        log.warning("cleanup: cannot delete %s: %s", name, exc.strerror)
        return
    report.deleted += 1
    report.bytes_freed += info.st_size
