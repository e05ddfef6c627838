"""The REST API: ``create_app(...)`` -> a Litestar app (routes in ``routes.py``, schemas in ``schemas.py``)."""

from __future__ import annotations

from jobkit.api.app import create_app

__all__ = ["create_app"]
