"""Laravel-style helpers for the built-in tasks, as in the seed: ``from jobkit import jobs; jobs.send_email(...)``.

Each enqueues one task through :func:`jobkit.dispatch` (the process's default client) and returns its
:class:`~jobkit.TaskRef`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from jobkit.builtin.exports import export_filename, export_payload
from jobkit.facade import default_client, dispatch
from jobkit.services.client import TaskRef

__all__ = [
    "cleanup_old_files",
    "export_filename",
    "process_export",
    "send_delayed_email",
    "send_email",
    "send_email_at",
    "send_notification",
    "send_password_reset_email",
    "send_verification_email",
]


def send_email(to: str, subject: str, body: str, data: dict[str, Any] | None = None) -> TaskRef:
    """``email:send`` now; ``data`` fills ``$name`` placeholders in the subject and body."""
    return dispatch("email:send", **_email(to, subject, body, data))


def send_delayed_email(to: str, subject: str, body: str, delay: timedelta | float) -> TaskRef:
    """``email:send`` after ``delay`` (a timedelta, or seconds)."""
    return dispatch("email:send", delay=delay, **_email(to, subject, body, None))


def send_email_at(to: str, subject: str, body: str, at: datetime) -> TaskRef:
    """``email:send`` at ``at`` (a naive datetime is local time)."""
    return dispatch("email:send", at=at, **_email(to, subject, body, None))


def send_verification_email(to: str, name: str, token: str, base_url: str) -> TaskRef:
    """``email:verification``: a mail linking to ``<base_url>/verify-email?token=<token>``."""
    return dispatch("email:verification", to=to, name=name, token=token, base_url=base_url)


def send_password_reset_email(to: str, name: str, token: str, base_url: str) -> TaskRef:
    """``email:password_reset``: a mail linking to ``<base_url>/reset-password?token=<token>``."""
    return dispatch("email:password_reset", to=to, name=name, token=token, base_url=base_url)


def process_export(
    user_id: int | str,
    export_type: str,
    export: str,
    params: dict[str, Any] | None = None,
    filename: str | None = None,
) -> TaskRef:
    """``export:process`` of the query ``export`` declared under ``exports:`` in jobs.yaml (never SQL).

    The file is ``JOBKIT_DATA_DIR/exports/<filename>``; by default ``export_<user_id>_<YYYYmmdd_HHMMSS>.<ext>``
    (call :func:`export_filename` first to know the name). Refuses an undeclared export, an unknown export_type,
    parameters that do not bind or a filename with a directory in it before anything is enqueued.
    """
    client = default_client()
    payload = export_payload(client.project, user_id, export_type, export, params, filename)
    return client.dispatch("export:process", **payload)


def send_notification(
    channel: str,
    message: str,
    *,
    title: str | None = None,
    to: str | None = None,
    url: str | None = None,
    data: dict[str, Any] | None = None,
) -> TaskRef:
    """``notification:send`` to ``webhook`` (``url``), ``email`` (``to``) or ``log``."""
    payload: dict[str, Any] = {"channel": channel, "message": message}
    payload.update({k: v for k, v in {"title": title, "to": to, "url": url, "data": data}.items() if v is not None})
    return dispatch("notification:send", **payload)


def cleanup_old_files(older_than: str = "30d", dry_run: bool = False) -> TaskRef:
    """``cleanup:old_files``: delete files older than ``older_than`` under the cleanup roots."""
    return dispatch("cleanup:old_files", older_than=older_than, dry_run=dry_run)


def _email(to: str, subject: str, body: str, data: dict[str, Any] | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"to": to, "subject": subject, "body": body}
    if data is not None:
        payload["data"] = data
    return payload
