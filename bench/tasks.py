"""The no-op task both sides of the benchmark run."""

from __future__ import annotations


def noop() -> None:
    return None


def secret(token: str) -> None:
    """A no-op with one sensitive field (sealed on the way in, opened for the handler)."""
    return None


def fail() -> None:
    """Fails every time: with max_retries 0 it is archived with its error and traceback (the soak's archived tasks)."""
    raise ValueError("bench: this task always fails")
