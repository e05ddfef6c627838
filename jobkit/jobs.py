"""Laravel-style helpers for the built-in tasks, as in the seed: ``jobs.send_email(to, subject, body)``.

Each enqueues one task through :func:`jobkit.dispatch` and returns its :class:`~jobkit.TaskRef`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import jobkit
from jobkit.client import Client, TaskRef, get_client
from jobkit.errors import DispatchError
from jobkit.exports import ExportError, bind_parameters, check_filename, export_filename
from jobkit.yamlnodes import did_you_mean

__all__ = [
    "cleanup_old_files",
    "export_filename",
    "export_payload",
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
    return jobkit.dispatch("email:send", **_email(to, subject, body, data))


def send_delayed_email(to: str, subject: str, body: str, delay: timedelta | float) -> TaskRef:
    """``email:send`` after ``delay`` (a timedelta, or seconds)."""
    return jobkit.dispatch("email:send", delay=delay, **_email(to, subject, body, None))


def send_email_at(to: str, subject: str, body: str, at: datetime) -> TaskRef:
    """``email:send`` at ``at`` (a naive datetime is local time)."""
    return jobkit.dispatch("email:send", at=at, **_email(to, subject, body, None))


def send_verification_email(to: str, name: str, token: str, base_url: str) -> TaskRef:
    """``email:verification``: a mail linking to ``<base_url>/verify-email?token=<token>``."""
    return jobkit.dispatch("email:verification", to=to, name=name, token=token, base_url=base_url)


def send_password_reset_email(to: str, name: str, token: str, base_url: str) -> TaskRef:
    """``email:password_reset``: a mail linking to ``<base_url>/reset-password?token=<token>``."""
    return jobkit.dispatch("email:password_reset", to=to, name=name, token=token, base_url=base_url)


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
    client = get_client()
    return client.dispatch("export:process", **export_payload(client, user_id, export_type, export, params, filename))


def export_payload(
    client: Client,
    user_id: int | str,
    export_type: str,
    export: str,
    params: dict[str, Any] | None = None,
    filename: str | None = None,
) -> dict[str, Any]:
    """The checked payload of ``export:process`` (shared by :func:`process_export` and the API's export trigger);
    raises :class:`~jobkit.errors.DispatchError` naming what is wrong."""
    declared = client.project.exports
    spec = declared.get(export)
    if spec is None:
        hint = did_you_mean(export, set(declared)) or "declared: " + (", ".join(sorted(declared)) or "none")
        raise DispatchError(
            f"export:process: {export!r} is not a query declared under exports: in jobs.yaml ({hint}); "
            "exports name a declared query, never SQL"
        )
    try:
        name = export_filename(user_id, export_type) if filename is None else check_filename(filename, export_type)
        bind_parameters(spec, params or {}, user_id)
    except ExportError as exc:
        raise DispatchError(f"export:process: {exc}") from None
    return {"user_id": user_id, "export_type": export_type, "export": export, "params": params or {}, "filename": name}


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
    return jobkit.dispatch("notification:send", **payload)


def cleanup_old_files(older_than: str = "30d", dry_run: bool = False) -> TaskRef:
    """``cleanup:old_files``: delete files older than ``older_than`` under the cleanup roots."""
    return jobkit.dispatch("cleanup:old_files", older_than=older_than, dry_run=dry_run)


def _email(to: str, subject: str, body: str, data: dict[str, Any] | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"to": to, "subject": subject, "body": body}
    if data is not None:
        payload["data"] = data
    return payload
