"""The ``jobkit`` command (``main``): the operator's edge, over the same services as the API."""

from __future__ import annotations

from jobkit.cli.main import main

__all__ = ["main"]
