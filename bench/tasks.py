"""The no-op task both sides of the benchmark run."""

from __future__ import annotations


def noop() -> None:
    return None
