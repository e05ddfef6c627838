"""Files jobkit writes hold payloads and secrets (the AOF, mails, exports, reports, the API secret): they are the
owner's only. Folders are 0700 and files 0600, whatever the umask."""

from __future__ import annotations

from pathlib import Path

__all__ = ["private_directory"]


def private_directory(path: Path) -> Path:
    """``path`` made (with its parents) and readable by its owner only (0700), even if it existed with looser modes."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path
