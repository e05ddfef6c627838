"""Handlers of the API tests' tasks: only their signatures matter (no worker runs them)."""

from __future__ import annotations

from typing import Any


def send_email(to: str, subject: str, body: str, data: dict[str, Any] | None = None, html: str | None = None) -> None:
    return None


def process_export(
    export_type: str,
    export: str,
    params: dict[str, Any] | None = None,
    user_id: int | str | None = None,
    filename: str | None = None,
) -> None:
    return None


def greet(name: str, times: int = 1) -> None:
    return None


def internal(key: str) -> None:
    return None
